"""The 16 hand templates of the reference recipe (docs/text-bank.md), each filled with a class display name."""

TEMPLATES = (
    "{}",
    "a video of {}.",
    "a video of a person {}.",
    "Human action of {}.",
    "{}, an action.",
    "Look, the human is {}",
    "Video classification of {}",
    "a photo of action {}.",
    "a picture of action {}.",
    "{} this is an action.",
    "{}, a video of action.",
    "Playing action of {}.",
    "Doing a kind of action, {}.",
    "Can you recognize the action of {}?",
    "The man is {}.",
    "The woman is {}.",
)
