"""lensnb: an executable review of training-set design for CNN strong-lens finders."""
from __future__ import annotations

__version__ = "0.1.0"
