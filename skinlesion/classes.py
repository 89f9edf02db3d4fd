"""The 7 HAM10000 diagnostic classes: the single source for Python and, through the model metadata, the site."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LesionClass:
    code: str  # the HAM10000 `dx` value
    name: str
    description: str
    malignant: bool
    urgency: str  # what a person with this result usually should do, in plain words


CLASSES: tuple[LesionClass, ...] = (
    LesionClass(
        "akiec",
        "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
        "Rough, scaly sun-damage lesions; a pre-cancer (actinic keratosis) or an early, superficial skin cancer "
        "(Bowen's disease) that can progress to squamous cell carcinoma.",
        True,
        "Usually treated; have it checked by a doctor within weeks.",
    ),
    LesionClass(
        "bcc",
        "Basal cell carcinoma",
        "The most common skin cancer. It grows slowly and rarely spreads, but it damages tissue around it if left "
        "untreated.",
        True,
        "A skin cancer that needs treatment; see a dermatologist soon.",
    ),
    LesionClass(
        "bkl",
        "Benign keratosis (seborrheic keratosis, solar lentigo, lichen-planus-like keratosis)",
        "Common benign growths and sun spots, often brown and 'stuck on'; some look like melanoma.",
        False,
        "Usually harmless; have it checked if it changes, bleeds or looks unlike your other spots.",
    ),
    LesionClass(
        "df",
        "Dermatofibroma",
        "A firm, benign nodule in the skin, often on the legs, sometimes after an insect bite.",
        False,
        "Usually harmless; no treatment needed unless it bothers you or changes.",
    ),
    LesionClass(
        "mel",
        "Melanoma",
        "A cancer of the pigment cells; the most dangerous common skin cancer, curable when removed early.",
        True,
        "Possibly dangerous; see a dermatologist soon.",
    ),
    LesionClass(
        "nv",
        "Melanocytic nevus (mole)",
        "An ordinary mole: a benign cluster of pigment cells. Most people have dozens.",
        False,
        "Usually harmless; watch it for change in size, shape or colour (the ABCDE rule).",
    ),
    LesionClass(
        "vasc",
        "Vascular lesion (angioma, angiokeratoma, pyogenic granuloma, haemorrhage)",
        "Lesions made of blood vessels, red to purple; almost always harmless.",
        False,
        "Usually harmless; see a doctor if it bleeds repeatedly or grows fast.",
    ),
)

CODES: tuple[str, ...] = tuple(c.code for c in CLASSES)


def index_of(code: str) -> int:
    """Position of a class code in the model's output vector."""
    return CODES.index(code)


def as_dicts() -> list[dict]:
    """The class list as plain dicts, in model output order (written into the model metadata for the site)."""
    return [asdict(c) for c in CLASSES]
