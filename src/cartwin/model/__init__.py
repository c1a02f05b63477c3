"""Models: declarations, the default CD19 CAR-T lupus model, and code generation."""

from cartwin.model.declaration import Model
from cartwin.model.lupus_cart import MODEL as DEFAULT_MODEL

MODELS: dict[str, Model] = {DEFAULT_MODEL.name: DEFAULT_MODEL}


def get_model(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None
