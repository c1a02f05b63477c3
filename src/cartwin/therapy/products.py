"""CAR-T products as sets of gene edits, and the mapping from edits to mechanisms.

A product is described by what was done to the cells, not by tuned numbers. Each edit acts
through a named mechanism parameter of the model:

- donor origin (``allogeneic``): the host sees allo-antigen, so host T cells that recognise
  the donor HLA directly are primed within days of the infusion, in proportion to the host
  T cells left by lymphodepletion (``ALLO``; Dupouy 2022: host T-cell exposure over days
  0-28 set UCART19 expansion and persistence);
- ``TRAC`` knockout removes the donor alpha-beta TCR, the driver of GvHD (``TCR_ALLO`` = 0),
  and with it the TCR's part in homeostatic proliferation after lymphodepletion (``TCR`` = 0:
  only ``H15_TCRKO`` of the cytokine drive is kept; Goldrath & Bevan 1999, Stenger 2020);
- ``HLA-A``/``HLA-B``/``HLA-C``/``B2M`` (class I) and ``CIITA`` (class II) knockouts lower the
  allo-antigen that host T cells see (``F_HLA``): class I is seen by CD8 T cells, class II by
  CD4 T cells, and a CD8 response without CD4 help is weaker (Bevan 2004), so removing
  class II also weakens the CD8 response to the class I that is kept;
- losing class I ligands for inhibitory NK receptors exposes the cells to NK "missing-self"
  killing (``F_MS``); HLA-C and HLA-E, kept in HLA-A/B-edited products, carry most of that
  inhibition; ``B2M`` knockout removes all class I, HLA-E included (Blood Adv 2024;8:3416:
  HLA class I loss stops allogeneic T-cell responses but triggers NK recognition);
- ``PD1`` knockout multiplies resistance to exhaustion by ``PD1_GAIN`` (1.0 by default: no
  human kinetic evidence of an effect; see docs/model.md);
- ``CD52`` knockout has no effect unless anti-CD52 (alemtuzumab) is given, which the
  lymphodepletion presets do not include; it is recorded but changes no parameter.

For TyU19 (TRAC, HLA-A, HLA-B, CIITA, PD-1 knocked out): TRAC sets ``TCR_ALLO`` to 0 (no
GvHD); HLA-A and HLA-B remove two thirds of class I and CIITA all of class II, so ``F_HLA``
falls from 1 to 0.1 (HLA-C alone, seen by CD8 T cells without CD4 help); HLA-A and HLA-B
remove 0.2 of NK inhibition (``F_MS`` 0.2), too little for missing-self killing; PD-1
leaves the kinetics unchanged by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KNOWN_TARGETS = ("CD19", "BCMA")
KNOWN_EDITS = ("TRAC", "HLA-A", "HLA-B", "HLA-C", "B2M", "CIITA", "PD1", "CD52")

# Share of host T-cell allorecognition carried by each HLA class. Assumed: CD8 (class I) and
# CD4 (class II) alloresponses of comparable size, class I slightly larger in mixed lymphocyte
# reactions; class I split equally over the three classical loci.
HLA_CLASS_I_WEIGHT = 0.6
HLA_CLASS_II_WEIGHT = 0.4
CLASS_I_LOCI = ("HLA-A", "HLA-B", "HLA-C")
# Share of the CD8 (class I) alloresponse that develops without CD4 help. Assumed 0.5: CD4 help
# is needed for full CD8 priming, expansion and memory (Bevan MJ. Helping the CD8+ T-cell
# response. Nat Rev Immunol 2004;4:595), but CD8 T cells also respond to directly presented
# alloantigen without it. With CIITA knocked out no donor class II is presented, so the CD8
# response to the class I that is kept is halved: HLA-A/B/CIITA editing leaves 0.6/3 x 0.5 = 0.1.
CD8_HELP_INDEPENDENT = 0.5

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
    targets: frozenset[str] = frozenset({"CD19"})
    construct: str = "second-generation 4-1BB CD19 CAR"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.edits) - set(KNOWN_EDITS))
        if unknown:
            raise ValueError(f"product {self.name}: unknown edits {unknown}; known: {list(KNOWN_EDITS)}")
        if not self.targets or set(self.targets) - set(KNOWN_TARGETS):
            raise ValueError(f"product {self.name}: targets {sorted(self.targets)}; give one or more of "
                             f"{list(KNOWN_TARGETS)}")

    @classmethod
    def from_definition(cls, name: str, definition) -> "Product":
        """A product defined in a protocol (``[products.NAME]``): every declared field, as sets."""
        fields = definition.model_dump()
        fields["description"] = fields.get("description") or f"user-defined product {name}"
        return cls(name, **{k: frozenset(v) if isinstance(v, list) else v for k, v in fields.items()})

    def mechanism_parameters(self, pd1_gain: float = 1.0) -> dict[str, float]:
        targets = {f"TGT_{t}": float(t in self.targets) for t in KNOWN_TARGETS}
        if not self.allogeneic:
            return {"ALLO": 0.0, "F_HLA": 0.0, "F_MS": 0.0, "TCR_ALLO": 0.0,
                    "PD1_GAIN": pd1_gain if "PD1" in self.edits else 1.0,
                    "TCR": 0.0 if "TRAC" in self.edits else 1.0, **targets}
        b2m = "B2M" in self.edits
        kept_class_i = [locus for locus in CLASS_I_LOCI if locus not in self.edits and not b2m]
        class_ii = 0.0 if "CIITA" in self.edits else 1.0
        help_ = CD8_HELP_INDEPENDENT + (1.0 - CD8_HELP_INDEPENDENT) * class_ii
        f_hla = (HLA_CLASS_I_WEIGHT * len(kept_class_i) / len(CLASS_I_LOCI) * help_
                 + HLA_CLASS_II_WEIGHT * class_ii)
        lost = {lig for lig in NK_LIGAND_WEIGHTS if lig in self.edits or b2m}
        f_ms = sum(NK_LIGAND_WEIGHTS[lig] for lig in lost)
        return {
            "ALLO": 1.0,
            "F_HLA": round(f_hla, 12),
            "F_MS": round(f_ms, 12),
            "TCR_ALLO": 0.0 if "TRAC" in self.edits else 1.0,
            "TCR": 0.0 if "TRAC" in self.edits else 1.0,
            "PD1_GAIN": pd1_gain if "PD1" in self.edits else 1.0,
            **targets,
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
        Product("allo_b2m_ko", "allogeneic CD19 CAR-T with TRAC and B2M knocked out (HLA class "
                "I-null, as CTX110): escapes CD8 but not CD4 allorecognition, exposed to NK "
                "missing-self", allogeneic=True, edits=frozenset({"TRAC", "B2M"})),
        Product("bcma_cd19_ccar", "autologous BCMA-CD19 compound CAR-T (cCAR), as in SLE and lupus "
                "nephritis at 3 x 10^6 cells/kg (Wang W 2024, Ann Rheum Dis 83:1304)", allogeneic=False,
                targets=frozenset({"CD19", "BCMA"}), construct="BCMA-CD19 compound CAR (two CARs)"),
        Product("bcma_car", "autologous anti-BCMA CAR-T after Flu/Cy, as in refractory lupus nephritis "
                "(Tongji series, n = 7; and after CD19 CAR-T relapse in myositis, Nat Med 2025, doi "
                "10.1038/s41591-025-03718-3)", allogeneic=False, targets=frozenset({"BCMA"}),
                construct="second-generation BCMA CAR"),
    )
}
