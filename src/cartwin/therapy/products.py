"""CAR-T products as sets of gene edits, and the mapping from edits to mechanisms.

A product is described by what was done to the cells, not by tuned numbers. Each edit acts
through a named mechanism parameter of the model:

- donor origin (``allogeneic``): the host sees allo-antigen, so rejection can start (``ALLO``);
- ``TRAC`` knockout removes the donor alpha-beta TCR, the driver of GvHD (``TCR_ALLO`` = 0);
- ``HLA-A``/``HLA-B``/``HLA-C``/``B2M`` (class I) and ``CIITA`` (class II) knockouts lower the
  allo-antigen that host T cells see (``F_HLA``);
- losing class I ligands for inhibitory NK receptors exposes the cells to NK "missing-self"
  killing (``F_MS``); HLA-C and HLA-E, kept in HLA-A/B-edited products, carry most of that
  inhibition;
- ``PD1`` knockout multiplies proliferation by ``PD1_GAIN`` (1.0 by default: no human kinetic
  evidence of an effect; see docs/model.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KNOWN_EDITS = ("TRAC", "HLA-A", "HLA-B", "HLA-C", "B2M", "CIITA", "PD1", "CD52")

# Share of host T-cell allorecognition carried by each HLA class. Assumed: CD8 (class I) and
# CD4 (class II) alloresponses of comparable size, class I slightly larger in mixed lymphocyte
# reactions; with class I split equally over the three classical loci, HLA-A/B/CIITA editing
# leaves 0.6/3 = 0.2, a prior of 0.2 for TyU19.
HLA_CLASS_I_WEIGHT = 0.6
HLA_CLASS_II_WEIGHT = 0.4
CLASS_I_LOCI = ("HLA-A", "HLA-B", "HLA-C")

# Share of NK inhibition lost when a ligand is missing (KIR ligands HLA-C and Bw4 on HLA-B,
# NKG2A ligand HLA-E, whose surface expression needs class I leader peptides and B2M).
# Assumed weights: HLA-C 0.5, HLA-E 0.3, HLA-B 0.15, HLA-A 0.05 (HLA-A/B-edited cells keep
# HLA-C/E and escape most NK killing: Cancer Immunol Immunother 2023; B2M loss removes all).
NK_LIGAND_WEIGHTS = {"HLA-C": 0.5, "HLA-E": 0.3, "HLA-B": 0.15, "HLA-A": 0.05}


@dataclass(frozen=True)
class Product:
    name: str
    description: str
    allogeneic: bool
    edits: frozenset[str] = field(default_factory=frozenset)
    construct: str = "second-generation 4-1BB CD19 CAR"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.edits) - set(KNOWN_EDITS))
        if unknown:
            raise ValueError(f"product {self.name}: unknown edits {unknown}; known: {list(KNOWN_EDITS)}")

    def mechanism_parameters(self, pd1_gain: float = 1.0) -> dict[str, float]:
        if not self.allogeneic:
            return {"ALLO": 0.0, "F_HLA": 0.0, "F_MS": 0.0, "TCR_ALLO": 0.0,
                    "PD1_GAIN": pd1_gain if "PD1" in self.edits else 1.0}
        b2m = "B2M" in self.edits
        kept_class_i = [locus for locus in CLASS_I_LOCI if locus not in self.edits and not b2m]
        class_ii = 0.0 if "CIITA" in self.edits else 1.0
        f_hla = (HLA_CLASS_I_WEIGHT * len(kept_class_i) / len(CLASS_I_LOCI)
                 + HLA_CLASS_II_WEIGHT * class_ii)
        lost = {lig for lig in NK_LIGAND_WEIGHTS if lig in self.edits or b2m}
        f_ms = sum(NK_LIGAND_WEIGHTS[lig] for lig in lost)
        return {
            "ALLO": 1.0,
            "F_HLA": round(f_hla, 12),
            "F_MS": round(f_ms, 12),
            "TCR_ALLO": 0.0 if "TRAC" in self.edits else 1.0,
            "PD1_GAIN": pd1_gain if "PD1" in self.edits else 1.0,
        }


PRODUCTS: dict[str, Product] = {
    p.name: p
    for p in (
        Product("autologous_cd19", "autologous 4-1BB CD19 CAR-T, as Erlangen's MB-CART19.1 "
                "(Mackensen 2022)", allogeneic=False),
        Product("tyu19", "allogeneic healthy-donor CD19 CAR-T with TRAC, HLA-A, HLA-B, CIITA and "
                "PD-1 knocked out by CRISPR-Cas9 (Wang X 2024, Cell)", allogeneic=True,
                edits=frozenset({"TRAC", "HLA-A", "HLA-B", "CIITA", "PD1"})),
        Product("allo_hla_intact", "allogeneic CD19 CAR-T with only TRAC knocked out (HLA intact, "
                "as UCART19 without alemtuzumab)", allogeneic=True, edits=frozenset({"TRAC"})),
    )
}
