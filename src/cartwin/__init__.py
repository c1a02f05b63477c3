"""cartwin: a virtual twin of CD19 CAR-T cell therapy for autoimmune disease."""

__version__ = "0.1.0"
