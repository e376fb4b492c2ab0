"""Tasks and models: synthetic datasets, small model builders, local pretrained models,
and the determinism helpers their trainings share (:mod:`.determinism`)."""

from .determinism import deterministic, one_thread
from .models import (
    TrainedClassifier,
    accuracy,
    cache_dir,
    default_model,
    paper_bert,
    paper_bert_config,
    train_classifier,
)
from .pretrained import load_minilm, minilm_dir
from .synthetic import (
    TASKS,
    AdjacentDuplicate,
    BinCountOnes,
    Contains1,
    ContainsTokenSet,
    FirstTokenRepeatedImmediately,
    FirstTokenRepeatedLast,
    FirstTokenRepeatedOnce,
    SyntheticTask,
    get_task,
    split,
)

__all__ = [
    "deterministic",
    "one_thread",
    "load_minilm",
    "minilm_dir",
    "SyntheticTask",
    "ContainsTokenSet",
    "Contains1",
    "FirstTokenRepeatedImmediately",
    "FirstTokenRepeatedLast",
    "AdjacentDuplicate",
    "FirstTokenRepeatedOnce",
    "BinCountOnes",
    "TASKS",
    "get_task",
    "split",
    "paper_bert_config",
    "paper_bert",
    "train_classifier",
    "TrainedClassifier",
    "default_model",
    "cache_dir",
    "accuracy",
]

from .appb import TrainedMLP, appb_data, appb_label, appb_mlp, train_appb_mlp

__all__ += ["appb_data", "appb_label", "appb_mlp", "TrainedMLP", "train_appb_mlp"]

from .agreement import (  # noqa: E402
    AgreementBatch,
    AgreementExample,
    AgreementSentence,
    TrainedAgreementModel,
    WordTokenizer,
    agreement_model,
    generate_sentences,
)

__all__ += [
    "AgreementSentence",
    "AgreementExample",
    "AgreementBatch",
    "WordTokenizer",
    "TrainedAgreementModel",
    "agreement_model",
    "generate_sentences",
]

from .induction import (  # noqa: E402
    FULL_CONFIG,
    SMALL_CONFIG,
    AttentionOnlyTransformer,
    InductionConfig,
    TrainedInductionModel,
    head_scores,
    induction_model,
    known_circuit,
    repeated_sequences,
    train_induction_model,
)

__all__ += [
    "AttentionOnlyTransformer",
    "InductionConfig",
    "SMALL_CONFIG",
    "FULL_CONFIG",
    "TrainedInductionModel",
    "repeated_sequences",
    "train_induction_model",
    "induction_model",
    "head_scores",
    "known_circuit",
]
