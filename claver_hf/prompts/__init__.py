"""Interpretive prompt banks: format, bundled banks, checks, and the LLM generator."""

from .bank import (
    BUNDLED_BANKS,
    INTERPRETIVE_FORMS,
    ClassPrompts,
    PromptBank,
    PromptBankError,
    display_name,
    load_prompt_bank,
)
from .check import CheckReport, adds_to_name, check_prompt_bank
from .generate import (
    Completer,
    EndpointCompleter,
    PromptGenerationError,
    TransformersCompleter,
    generate_prompt_bank,
)
from .label_views import LabelViews, resolve_label_views
from .templates import TEMPLATES

__all__ = [
    "Completer",
    "EndpointCompleter",
    "PromptGenerationError",
    "TransformersCompleter",
    "adds_to_name",
    "generate_prompt_bank",
    "BUNDLED_BANKS",
    "INTERPRETIVE_FORMS",
    "TEMPLATES",
    "CheckReport",
    "LabelViews",
    "ClassPrompts",
    "PromptBank",
    "PromptBankError",
    "check_prompt_bank",
    "display_name",
    "load_prompt_bank",
    "resolve_label_views",
]
