"""The paper's experiments, their tasks and their data; loaded on demand, never by
``import captum_semiring``."""
