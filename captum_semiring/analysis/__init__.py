"""Analyses built on semiring sweeps: branch flow, aggregation."""

from .branch_flow import BranchFlow, branch_flow

__all__ = ["BranchFlow", "branch_flow"]
