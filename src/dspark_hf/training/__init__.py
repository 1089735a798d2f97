"""Training, fine-tuning and export of DSpark drafts."""
