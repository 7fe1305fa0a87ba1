"""Interpretive prompt banks: format, bundled banks, checks."""

from .bank import (
    BUNDLED_BANKS,
    INTERPRETIVE_FORMS,
    ClassPrompts,
    PromptBank,
    PromptBankError,
    display_name,
    load_prompt_bank,
)
from .check import CheckReport, check_prompt_bank
from .templates import TEMPLATES

__all__ = [
    "BUNDLED_BANKS",
    "INTERPRETIVE_FORMS",
    "TEMPLATES",
    "CheckReport",
    "ClassPrompts",
    "PromptBank",
    "PromptBankError",
    "check_prompt_bank",
    "display_name",
    "load_prompt_bank",
]
