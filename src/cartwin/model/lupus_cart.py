"""The default model: CD19 CAR-T cells in systemic lupus erythematosus.

Autologous and allogeneic products share one set of equations; a product differs only in the
mechanism parameters that its gene edits set (``ALLO``, ``F_HLA``, ``F_MS``, ``PD1_GAIN``,
``TCR_ALLO``). Sub-models follow published structures where one exists (Langenhorst 2019
fludarabine PK, Friberg 2002 myelosuppression, Kimmel 2021 Gompertz host-T recovery, Stein 2019
CAR-T contraction and persistence, Petz 1969 complement turnover); the links between them that
no paper quantifies are marked *assumed* or *calibrated* with the target that set them.

Units: time in days; cells in blood in cells/uL (marrow and plasma-cell pools in
cells/uL-equivalent); drugs in mg and mg/L; IL-6 in pg/mL; anti-dsDNA in IU/mL; IgG, C3 and C4
in g/L; ALT/AST in U/L; ANC and platelets in 10^9/L.
"""

from __future__ import annotations

from dataclasses import replace

from cartwin.model.declaration import (
    Assignment, Correlation, DoseInput, Model, Observable, Parameter, State, patient_covariates,
)

# Sources, cited once and referred to by key in the parameter table.
REFERENCES = {
    "Langenhorst2019": "Langenhorst JB et al. Fludarabine exposure in the conditioning prior to "
    "allogeneic HCT predicts outcomes. Clin Pharmacokinet 2019;58:627 (doi 10.1007/s40262-018-0715-9)",
    "Juma1984": "Juma FD et al. Pharmacokinetics of cyclophosphamide in normal and hepatic "
    "dysfunction. Eur J Clin Pharmacol 1984;26:591 (PMID 6468474)",
    "Friberg2002": "Friberg LE et al. Model of chemotherapy-induced myelosuppression with parameter "
    "consistency across drugs. J Clin Oncol 2002;20:4713",
    "Kimmel2021": "Kimmel GJ, Locke FL, Altrock PM. The roles of T cell competition and stochastic "
    "extinction events in CAR T-cell therapy. Proc R Soc B 2021;288:20210229 (BIOMD0000001041)",
    "Stein2019": "Stein AM et al. Tisagenlecleucel model-based cellular kinetic analysis. CPT "
    "Pharmacometrics Syst Pharmacol 2019;8:285 (doi 10.1002/psp4.12388)",
    "Chaudhury2020": "Chaudhury A et al. Chimeric antigen receptor T cell therapies: a review of "
    "cellular kinetic-pharmacodynamic modeling approaches. J Clin Pharmacol 2020;60 Suppl 1:S147 "
    "(BioModels MODEL2109110005)",
    "Hardiansyah2019": "Hardiansyah D, Ng CM. Quantitative systems pharmacology model of chimeric "
    "antigen receptor T-cell therapy. Clin Transl Sci 2019 (BioModels MODEL2009230001)",
    "Petz1969": "Petz LD et al. Quantitative C3 turnover in normal subjects and SLE. J Clin Invest "
    "1968;47:2469 (PMID 4975569)",
    "Andersen2009": "Andersen JT, Sandlie I. The versatile MHC class I-related FcRn protects IgG "
    "and albumin from degradation. Drug Metab Pharmacokinet 2009;24:318",
    "Sherman2022": "Sherman & Goessling. Plasma clearance of ALT and AST from 6.5 million values. "
    "medRxiv 2022.09.14.22279084",
    "Pan2019rtx": "Paediatric rituximab PK/PD in autoimmune disease (39 children): CD19+ turnover "
    "0.02/d. Br J Clin Pharmacol 2019 (PMC6624401)",
    "Mackensen2022": "Mackensen A et al. Anti-CD19 CAR T cell therapy for refractory systemic lupus "
    "erythematosus. Nat Med 2022;28:2124 (B cells back at 110 +/- 32 d)",
    "Mei2012": "Mei HE, Schmidt S, Dorner T. Rationale of anti-CD19 immunotherapy: CD19- BCMA+ "
    "long-lived plasma cells. Arthritis Res Ther 2012;14(Suppl 5):S1",
    "Andraud2012": "Andraud M et al. Living on three time scales: the dynamics of plasma cell and "
    "antibody populations. PLoS Comput Biol 2012;8:e1002418",
    "Kochenderfer2017": "Kochenderfer JN et al. Lymphoma remissions caused by anti-CD19 CAR T cells "
    "are associated with high serum IL-15 after lymphocyte depletion. J Clin Oncol 2017;35:1803",
    "DeBock2013": "De Bock M et al. Kinetics of IL-7 and IL-15 levels after allogeneic peripheral "
    "blood stem cell transplantation following nonmyeloablative conditioning. PLoS One "
    "2013;8:e55876 (serum IL-15 2.4 pg/mL at baseline, 12.5 on day 7, 6.2 on day 28)",
    "Gattinoni2005": "Gattinoni L et al. Removal of homeostatic cytokine sinks by lymphodepletion "
    "enhances the efficacy of adoptively transferred tumor-specific CD8+ T cells. J Exp Med "
    "2005;202:907",
    "Wrzesinski2010": "Wrzesinski C et al. Increased intensity lymphodepletion enhances tumor "
    "treatment efficacy of adoptively transferred tumor-specific T cells. J Immunother 2010;33:1",
    "Hirayama2019": "Hirayama AV et al. The response to lymphodepletion impacts PFS in patients with "
    "aggressive non-Hodgkin lymphoma treated with CD19 CAR T cells. Blood 2019;133:1876",
    "Fabrizio2022": "Fabrizio VA et al. Optimal fludarabine lymphodepletion is associated with "
    "improved outcomes after CAR T-cell therapy. Blood Adv 2022;6:1961 (cumulative F-ara-A AUC "
    ">= 13.8 mg.h/L; below it HR 1.96 for relapse or loss of B-cell aplasia)",
    "Dekker2022": "Dekker L et al. Fludarabine exposure predicts outcome after CD19 CAR T-cell "
    "therapy in children and young adults with ALL. Blood Adv 2022;6:1969 (cut-point 14 mg.h/L; "
    "B-cell aplasia at 6 months 37.3% below vs 77.3% above)",
    "Wijermans1993": "Wijermans PW et al. Severe immunodeficiency in patients treated with "
    "fludarabine monophosphate. Eur J Haematol 1993;50:292 (CD4 depletion still present 11-13 "
    "months after therapy)",
    "Turtle2016jci": "Turtle CJ et al. CD19 CAR-T cells of defined CD4+:CD8+ composition in adult "
    "B cell ALL patients. J Clin Invest 2016;126:2123 (CD8 responses to the transgene limited "
    "persistence)",
    "Turtle2016sci": "Turtle CJ et al. Immunotherapy of non-Hodgkin's lymphoma with a defined "
    "ratio of CD8+ and CD4+ CD19-specific CAR-T cells. Sci Transl Med 2016;8:355ra116 (PFS 1.5 "
    "months without fludarabine)",
    "Awasthi2020": "Awasthi R et al. Tisagenlecleucel cellular kinetics, dose, and immunogenicity "
    "in relation to clinical factors in relapsed/refractory DLBCL. Blood Adv 2020;4:560 (no "
    "relationship of cellular kinetics with dose, n = 111)",
    "Ogasawara2021": "Ogasawara K et al. Population cellular kinetics of lisocabtagene maraleucel. "
    "Clin Pharmacokinet 2021 (doi 10.1007/s40262-021-01039-5; covariate effects, dose included, "
    "smaller than between-subject variability)",
    "Dupouy2022": "Dupouy S et al. UCART19 kinetics and host-versus-graft. Cancer Res Commun "
    "2022;2:1520 (HLA-intact CAR+ persistence <= 28 d in 10/25)",
    "WangX2024": "Wang X et al. Allogeneic CD19-targeted CAR-T therapy in patients with severe "
    "myositis and systemic sclerosis. Cell 2024 (doi 10.1016/j.cell.2024.06.027)",
    "WangW2024ard": "Wang W et al. BCMA-CD19 compound CAR T cells for systemic lupus erythematosus: a "
    "phase 1 open-label clinical trial. Ann Rheum Dis 2024;83:1304-1314 (doi 10.1136/ard-2024-225785): "
    "autoantibodies, including those of long-lived plasma cells, negative by month 3",
    "BloodAdv2021bcma": "Humoral immune reconstitution after anti-BCMA CAR T-cell therapy in relapsed/"
    "refractory multiple myeloma. Blood Adv 2021;5:5290 (n = 40 responders): marrow BCMA+ cells "
    "undetectable by a median day 28; B-cell aplasia in all, nadir on a median day 7, lasting a median "
    "70 d (23-270); IgG recovered at a median day 386",
    "IJMS2024bcma": "B-cell maturation antigen (BCMA) as a biomarker and potential treatment target in "
    "systemic lupus erythematosus. Int J Mol Sci 2024;25:10845 (doi 10.3390/ijms251910845; Charite and "
    "DRFZ Berlin; abstract read, authors not recorded): in 100 SLE patients against 30 controls BCMA was "
    "raised on all B-cell subsets, higher on switched and unswitched memory than on naive B cells, and "
    "B-cell BCMA correlated with plasmablast frequency, anti-dsDNA and complement consumption",
    "WangD2025": "Wang D et al. Allogeneic CD19 CAR-T (TyU19) in refractory SLE. Med 2025 "
    "(PMID 40446794): CAR+ peak on day 14; no CRS",
    "Muller2024": "Muller F et al. CD19 CAR T-cell therapy in autoimmune disease: a case series with "
    "follow-up. N Engl J Med 2024;390:687 (doi 10.1056/NEJMoa2308917): drug-free remission over a "
    "median 15 (4-29) months; CRS grade 1 in 10/15, grade 2 in 1/15",
    "Lazarus2012": "Lazarus MN et al. B-cell numbers and phenotype at clinical relapse following "
    "rituximab therapy differ in SLE patients according to anti-dsDNA antibody levels. Rheumatology "
    "(Oxford) 2012;51:1208 (61 patients: relapse substantially delayed beyond B-cell repopulation; "
    "early relapse with faster repopulation)",
    "GomezMendez2018": "Gomez Mendez LM et al. Peripheral blood B cell depletion after rituximab and "
    "complete response in lupus nephritis. Clin J Am Soc Nephrol 2018;13:1502 (LUNAR: complete "
    "response in 47% with complete peripheral depletion vs 13% without)",
    "Iwata2011": "Iwata S et al. Phenotypic changes of lymphocytes in patients with SLE who are in "
    "longterm remission after B cell depletion therapy with rituximab. J Rheumatol (year not "
    "verified): ICOS and CD40L on CD4+ T cells fall within 28 days of B-cell depletion and stay low "
    "for 2 years in remission; relapse with returning memory B or ICOS+ CD4 memory T cells",
    "Baumjohann2013": "Baumjohann D et al. Persistent antigen and germinal center B cells sustain T "
    "follicular helper cell responses and phenotype. Immunity 2013;38:596",
    "Tur2024": "Tur C et al. CD19 CAR T-cell therapy induces deep tissue depletion of B cells. Ann "
    "Rheum Dis 2024 (lymph-node B cells gone after CAR-T, not after rituximab)",
    "Amanna2007": "Amanna IJ, Carlson NE, Slifka MK. Duration of humoral immunity to common viral "
    "and vaccine antigens. N Engl J Med 2007;357:1903 (antibody half-lives 11 y for tetanus to "
    "decades for viral antigens)",
    "Bhoj2016": "Bhoj VG et al. Persistence of long-lived plasma cells and humoral immunity in "
    "individuals responding to CD19-directed CAR T-cell therapy. Blood 2016;128:360 (PMID 27166358)",
    "Barmettler2024": "Barmettler S et al. Hypogammaglobulinemia after CD19 CAR T-cell therapy "
    "(579 patients; mean IgG 587 -> 362 mg/dL). J Allergy Clin Immunol 2024 (PMID 39505278)",
    "Lee2019": "Lee DW et al. ASTCT consensus grading for cytokine release syndrome and neurologic "
    "toxicity. Biol Blood Marrow Transplant 2019;25:625",
    "Stein2019CK": "Stein 2019 and Ogasawara 2021 (liso-cel): CAR-T doubling time 0.76-0.78 d, "
    "Tmax 9-10 d; expansion correlates with CRS (Mueller 2018; Awasthi 2020)",
    "Muller2025blood": "Muller F et al. Blood 2025 (title not recorded; "
    "doi 10.1182/blood.2025028375, PMID 40504989; abstract read): at similar lymphodepletion and CAR-T expansion, SLE patients "
    "had shorter CAR-T persistence and faster T- and B-cell reconstitution than B-NHL patients",
    "Le2018": "Le RQ et al. FDA approval summary: tocilizumab for treatment of chimeric antigen receptor "
    "T cell-induced severe or life-threatening cytokine release syndrome. Oncologist 2018;23:943 "
    "(8 mg/kg IV, up to 800 mg; CRS resolved within 14 days in 69% of 45 patients after one or two doses)",
    "Actemra2017": "Actemra (tocilizumab) US prescribing information (CRS indication since 2017), clinical pharmacology: central volume "
    "3.72 L and peripheral 3.35 L (RA), linear clearance 12.5 mL/h; concentration-dependent half-life "
    "up to 11 days (4 mg/kg) and 13 days (8 mg/kg) at steady state",
    "Nishimoto2008": "Nishimoto N et al. Mechanisms and pathologic significances in increase in serum "
    "interleukin-6 (IL-6) and soluble IL-6 receptor after administration of an anti-IL-6 receptor "
    "antibody, tocilizumab. Blood 2008;112:3959 (serum IL-6 rises after tocilizumab because receptor-"
    "mediated clearance is blocked; free sIL-6R saturated above about 1 ug/mL tocilizumab)",
    "Oluwole2021": "Oluwole OO et al. Prophylactic corticosteroid use in patients receiving axicabtagene "
    "ciloleucel for large B-cell lymphoma. Br J Haematol 2021;194:690 (ZUMA-1 cohort 6: dexamethasone "
    "from day 0 lowered grade >= 3 CRS; CAR-T expansion comparable to cohorts 1 and 4)",
    "Topp2021": "Topp MS et al. Earlier corticosteroid use for adverse event management in patients "
    "receiving axicabtagene ciloleucel for large B-cell lymphoma. Br J Haematol 2021;195:388 (ZUMA-1 "
    "cohort 4: steroids at grade 1 CRS/ICANS; lower severe CRS, similar CAR-T expansion)",
    "Meikle1977": "Meikle AW, Tyler FH. Potency and duration of action of glucocorticoids. Am J Med "
    "1977;63:200 (biological half-lives: dexamethasone 36-54 h, methylprednisolone 12-36 h; "
    "equivalent doses dexamethasone 0.75 mg = methylprednisolone 4 mg = prednisone 5 mg)",
    "Neupogen1991": "Neupogen (filgrastim) US prescribing information (approved 1991), clinical pharmacology: elimination "
    "half-life about 3.5 h, volume of distribution about 150 mL/kg",
    "Price1996": "Price TH, Chatta GS, Dale DC. Effect of recombinant granulocyte colony-stimulating "
    "factor on neutrophil kinetics in normal young and elderly humans. Blood 1996;88:335 (G-CSF "
    "shortens the marrow neutrophil transit time by several days)",
}


# Long-lived marrow plasma cells make at least this share of total IgG whatever the other two
# sources are declared, sampled or overridden to be: F_SL is capped at 1 - LONG_LIVED_IGG_FLOOR
# - F_IGG_AUTO, and the bounds of F_IGG_SL and F_IGG_AUTO follow from the same number.
LONG_LIVED_IGG_FLOOR = 0.1
SHORT_LIVED_IGG_CEILING = 1 - LONG_LIVED_IGG_FLOOR


def _p(name, value, unit, description, source, group, iiv=0.0, lower=None, upper=None):
    return Parameter(name, float(value), unit, description, source, group, iiv, lower, upper)


PARAMETERS = (
    # --- fludarabine (F-ara-A) PK: Langenhorst 3-compartment, allometric on weight -------------
    _p("CL_F_NR", 3.24, "L/h", "F-ara-A non-renal clearance (70 kg)", "Langenhorst2019", "fludarabine PK", 0.20),
    _p("CL_F_R", 0.782, "L/h per L/h CrCl", "F-ara-A renal clearance per unit creatinine clearance", "Langenhorst2019 (renal slope on eGFR; CrCl used in its place, see docs)", "fludarabine PK", 0.11),
    _p("V1_F", 39.0, "L", "F-ara-A central volume (70 kg)", "Langenhorst2019", "fludarabine PK", 0.08),
    _p("V2_F", 20.0, "L", "F-ara-A first peripheral volume", "Langenhorst2019", "fludarabine PK"),
    _p("V3_F", 50.0, "L", "F-ara-A second peripheral volume", "Langenhorst2019", "fludarabine PK"),
    _p("Q2_F", 8.6, "L/h", "F-ara-A inter-compartmental clearance 1", "Langenhorst2019", "fludarabine PK"),
    _p("Q3_F", 3.8, "L/h", "F-ara-A inter-compartmental clearance 2", "Langenhorst2019", "fludarabine PK"),
    _p("F_ARAA", 0.781, "mg/mg", "F-ara-A mass per mg fludarabine phosphate (285.2/365.2)", "derived: molecular weight ratio", "fludarabine PK"),
    # --- cyclophosphamide PK, one compartment ------------------------------------------------
    _p("CL_CY", 0.063, "L/h/kg", "cyclophosphamide clearance", "Juma1984", "cyclophosphamide PK", 0.25),
    _p("V_CY", 0.69, "L/kg", "cyclophosphamide volume (CL x 7.6 h / ln 2)", "Juma1984 (half-life 7.6 h)", "cyclophosphamide PK", 0.10),
    # --- Friberg myelosuppression -------------------------------------------------------------
    _p("ANC0", 3.5, "10^9/L", "baseline absolute neutrophil count", "assumed: SLE patients on immunosuppression run below the healthy 4-5 x 10^9/L", "myelosuppression", 0.30, 0.5, 15),
    _p("MTT_N", 5.2, "day", "neutrophil mean transit time (125 h)", "Friberg2002 (paclitaxel MTT 124 h; docetaxel 88.7 h)", "myelosuppression", 0.15),
    _p("GAMMA_N", 0.16, "1", "neutrophil feedback exponent", "Friberg2002", "myelosuppression"),
    _p("SLOPE_N_F", 2.0, "L/mg", "neutrophil precursor kill per F-ara-A concentration", "calibrated: ANC nadir about 0.2 x 10^9/L near day +7 under standard Flu/Cy, recovery by day +14-21 (a behaviour target of the model's design, assumed: no published SLE nadir curve was found)", "myelosuppression", 0.30),
    _p("SLOPE_N_CY", 0.12, "L/mg", "neutrophil precursor kill per cyclophosphamide concentration", "calibrated: as SLOPE_N_F", "myelosuppression", 0.30),
    _p("PLT0", 220.0, "10^9/L", "baseline platelet count", "assumed: SLE reference population", "myelosuppression", 0.25, 20, 600),
    _p("MTT_P", 5.5, "day", "platelet precursor mean transit time", "assumed: megakaryocyte maturation 5-7 days; Friberg-type platelet models use 120-160 h", "myelosuppression", 0.15),
    _p("PLT_SENS", 0.5, "1", "platelet precursor sensitivity relative to neutrophil precursors", "assumed: Flu/Cy thrombocytopenia is milder than neutropenia in CAR-T series; in conflict with the Erlangen SLE report that platelets stayed close to normal (Muller2025blood), which this value overstates (virtual patients after Erlangen Flu/Cy: median nadir about 80 x 10^9/L, below 50 in about a fifth), kept because 0.4 or less no longer gives the severe thrombocytopenia of 1 of 3 TyU19 SLE patients after the lighter regimen (WangD2025; target tyu19_thrombocytopenia: 1/200 at 0.4, 0/200 at 0.3)", "myelosuppression", 0.3),
    # --- lymphodepletion kill -------------------------------------------------------------------
    _p("S_T_F", 2.0, "L/mg/day", "host T kill per F-ara-A concentration", "calibrated: host T nadir 3-12% of baseline depending on regimen (a behaviour target of the model's design, assumed from the oncology Flu/Cy lymphocyte nadirs)", "lymphodepletion", 0.25),
    _p("S_T_CY", 0.10, "L/mg/day", "host T kill per cyclophosphamide concentration", "calibrated: as S_T_F", "lymphodepletion", 0.25),
    _p("S_NK_F", 1.5, "L/mg/day", "NK kill per F-ara-A concentration", "calibrated: as S_T_F", "lymphodepletion", 0.25),
    _p("S_NK_CY", 0.08, "L/mg/day", "NK kill per cyclophosphamide concentration", "calibrated: as S_T_F", "lymphodepletion", 0.25),
    _p("S_B_F", 0.6, "L/mg/day", "B-lineage kill per F-ara-A concentration", "calibrated: B cells 30-50% of baseline at day 0", "lymphodepletion", 0.25),
    _p("S_B_CY", 0.03, "L/mg/day", "B-lineage kill per cyclophosphamide concentration", "calibrated: as S_B_F", "lymphodepletion", 0.25),
    # --- host T, NK and homeostatic cytokines ------------------------------------------------
    _p("H0", 900.0, "cells/uL", "baseline host T cells", "assumed: SLE lymphopenia; healthy 1000-2000 cells/uL", "host lymphocytes", 0.35, 50, 4000),
    _p("R_H", 0.1, "1/day", "Gompertz recovery rate of host T without fludarabine", "calibrated: host T cells back to half of baseline by day 21-36 after the presets (50% by day 22-34, a behaviour target of the model's design, assumed), the rate slowed by fludarabine exposure (FAUC_H) to about 0.05/d after 75 mg/m^2; Kimmel2021 r_N 0.17/d is an upper bound", "host lymphocytes", 0.25),
    _p("FAUC_H", 14.0, "mg*h/L", "cumulative F-ara-A AUC that halves the recovery rate of host T cells (the rate falls with the square of FAUC/FAUC_H)", "calibrated: fludarabine leaves a lasting T-cell (CD4) depletion, still present 11-13 months after treatment (Wijermans1993), which Cy alone does not; the half-rate exposure is put at the published optimal cumulative AUC of 13.8-14 mg.h/L (Fabrizio2022, Dekker2022), and the effect is threshold-like (second order, model 0.6: the published finding is a cut-point), so that below it host T cells come back sooner, homeostatic cytokines fall earlier, the CAR-T expand and persist less and B-cell aplasia is shorter (Dekker2022: aplasia at 6 months 37.3% vs 77.3%)", "host lymphocytes", 0.3),
    _p("NK0", 150.0, "cells/uL", "baseline NK cells", "assumed: SLE NK lymphopenia; healthy 100-400 cells/uL", "host lymphocytes", 0.35, 10, 1000),
    _p("R_NK", 0.06, "1/day", "Gompertz recovery rate of NK cells", "calibrated: NK 50% recovered by day 13-21 (NK recover first after HSCT)", "host lymphocytes", 0.25),
    _p("K15", 2.0, "1/day", "homeostatic cytokine (IL-7/IL-15) turnover: the level follows the lymphocyte sink within days", "assumed: serum IL-15 is up by day 7 after conditioning and falls back over weeks as lymphocytes return (DeBock2013); the rise and fall track the sink, so the turnover only needs to be fast against them", "homeostatic cytokines"),
    _p("FOLD15", 5.0, "1", "homeostatic cytokine fold rise when the lymphocyte sink is empty", "DeBock2013 (median serum IL-15 2.4 pg/mL at baseline, 12.5 on day 7 after non-myeloablative conditioning: 5.2-fold); structure: production constant, consumption by lymphocytes (Gattinoni2005 cytokine sinks)", "homeostatic cytokines", 0.2),
    # --- CAR-T kinetics -----------------------------------------------------------------------
    _p("BLOOD_EQ", 5.0e8, "cells per cells/uL", "whole-body cells per blood cell/uL", "Kimmel2021 (Table 1 whole-body values / SBML per-uL values)", "CAR-T"),
    _p("RHO", 2.1, "1/day", "maximal CAR-T proliferation rate", "calibrated: CAR-T peak day 7-14 after Erlangen Flu/Cy (Stein2019 Tmax 9.3 d) and at about day 14 after low-intensity LD (WangD2025); with the cytokine gate about half open at the peak the net rate is near 1/d (Stein2019 0.89/d); 2.2 in model 0.5, 2.1 in 0.6, where the steeper antigen gate (N_AG) ends expansion sooner; not lower, so that patients given 2e5 cells/kg still expand and respond (responses across the whole tisagenlecleucel dose range, Awasthi2020)", "CAR-T", 0.15),
    _p("K_AG", 6.0, "cells/uL", "CD19+ antigen (B cells, precursors, plasmablasts) giving half-maximal CAR-T stimulation", "calibrated: with N_AG, expansion stops as B cells vanish (peak day 7-14, Stein2019) and the effectors then contract at their own rate: initial half-life 4.3-5.0 d after the peak (Stein2019, Ogasawara2021), which the antigen still coming out of the marrow (a few cells/uL-eq during aplasia) must not hold up", "CAR-T", 0.2),
    _p("EC15", 4.0, "1", "homeostatic cytokine level (fold baseline) giving half-maximal CAR-T proliferation", "calibrated: the gate is steep between the levels reached after the reduced (about 3.2-fold), Erlangen (3.7) and standard (4.3) regimens, so the CAR-T peak rises with intensity (Kochenderfer2017: IL-15 after Flu/Cy associated with CAR+ peak and remission; Hirayama2019: higher-intensity Cy/Flu raised IL-7 and the response; Wrzesinski2010: adoptive-transfer efficacy rises with conditioning intensity)", "CAR-T", 0.2),
    _p("F15_MIN", 0.1, "1", "share of antigen-driven CAR-T proliferation left without homeostatic cytokine support or autocrine drive (the floor of both routes, F_AI and F_CY)", "assumed: at a low antigen load (B cells returning at the end of aplasia) CD19 antigen alone drives only a weak expansion without homeostatic cytokines, so that the persisting CAR-T do not hold B cells down beyond 110 +/- 32 d (Mackensen2022); at a high load F_AIX adds to it; without fludarabine, CAR-T were less effective (Turtle2016sci: PFS 1.5 months); no SLE kinetics without lymphodepletion were found", "CAR-T"),
    _p("N15", 2.0, "1", "Hill coefficient of the cytokine gate", "assumed: smooth gate instead of a Tmax switch (avoids solver discontinuities)", "CAR-T"),
    _p("K_E", 0.16, "1/day", "effector CAR-T contraction rate (t1/2 4.3 d)", "Stein2019 (alpha)", "CAR-T", 0.2),
    _p("K_EM", 0.03, "1/day", "effector to memory CAR-T conversion", "calibrated: with BETA_M, the persisting pool after contraction is about a fifth of the peak, so that TyU19 stays detectable beyond 3 months in most patients (WangX2024) while autologous CAR-T fall below the kill threshold and B cells return at 110 +/- 32 d (Mackensen2022); Chaudhury2020 k_EP 0.0012/d (Stein FB 0.0079, oncology, by qPCR) is the lower bound", "CAR-T", 0.3),
    _p("BETA_M", 0.012, "1/day", "memory CAR-T loss (t1/2 58 d)", "calibrated: B cells return at 110 +/- 32 d after autologous CAR-T (Mackensen2022) when the persisting CAR-T fall below the kill threshold (KC_KILL); faster than the oncology terminal half-life of 220-352 d (Stein2019 beta 0.0032/d; Ogasawara2021) because SLE patients had shorter CAR-T persistence and faster B-cell reconstitution than B-NHL patients at similar expansion (Muller2025blood)", "CAR-T", 0.30),
    _p("K_ME", 0.01, "1/day", "antigen-driven memory to effector reactivation", "assumed: Kirouac 2023 antigen toggle, simplified; with the steep antigen gate (N_AG) it acts only when B cells or precursors are back near K_AG", "CAR-T"),
    _p("K_X", 0.08, "1/day", "accumulation of antigen-driven CAR-T exhaustion", "calibrated (model 0.5, value kept): B cells return at 110 +/- 32 d (Mackensen2022); in 0.6 exhaustion accrues while antigen is above about K_AG (the expansion burst, and precursors coming back at the end of aplasia), so the exhausted cells cannot re-expand on the returning precursors; without it CAR-T and precursors settle into a lasting equilibrium with no B-cell return; structure after Kirouac 2023 Nat Biotechnol (exhaustion from chronic antigen)", "CAR-T"),
    _p("D_X", 0.01, "1/day", "recovery from exhaustion", "assumed: memory of stimulation over months", "CAR-T"),
    _p("K_XC", 0.01, "cells/uL", "CAR-T level above which the exhaustion state accrues", "assumed: exhaustion is a property of infused cells, so it may not build up before infusion (far below the 0.1 cells/uL of a 1e6/kg dose)", "CAR-T"),
    _p("X50", 4.0, "1", "exhaustion that halves CAR-T proliferation", "calibrated (model 0.5, value kept): B cells back at a mean 110 +/- 32 d after autologous CAR-T with Erlangen Flu/Cy (Mackensen2022); see K_X", "CAR-T", 0.15),
    _p("K_KILL", 2.0, "1/day", "maximal CD19+ cell kill by CAR-T", "calibrated: B cells < 1/uL by day 6-14 (WangX2024: complete depletion within 2 weeks) and, with KC_KILL, a kill threshold that ends B-cell aplasia at 110 +/- 32 d (Mackensen2022) and keeps TyU19 patients aplastic beyond 2 months (WangX2024); cf. Kimmel2021 gamma_B 1.15/d", "CAR-T", 0.2),
    _p("KC_KILL", 10.0, "cells/uL", "CAR-T (effector and memory) giving half-maximal kill; the kill rises with the square of the CAR-T level below it", "calibrated: as K_KILL; steep (second-order) so that the kill falls off sharply once the persisting CAR-T drop below a few cells/uL: B-cell aplasia lasts while CAR-T persist and ends when they fall below that level (B-cell recovery tracks loss of CAR-T persistence; Mackensen2022 B cells back at 110 +/- 32 d, Muller2025blood shorter persistence and faster B-cell reconstitution in SLE); cf. Kimmel2021 k_B 4 cells/uL (first order)", "CAR-T", 0.2),
    _p("THETA_PB", 1.0, "1", "CD19 on plasmablasts relative to B cells", "Mei2012 (plasmablasts are CD19+)", "CAR-T"),
    # --- products: set by the therapy layer from the gene edits ------------------------------
    _p("ALLO", 0.0, "1", "1 for a donor-derived product (host sees allo-antigen), 0 autologous", "product edit mapping (see docs/model.md, products)", "product"),
    _p("F_HLA", 0.0, "1", "share of HLA allo-antigen still displayed (class I and II weighted)", "product edit mapping; HLA-A/B/CIITA-KO keeps HLA-C (Cancer Immunol Immunother 2023, doi 10.1007/s00262-023-03586-1)", "product"),
    _p("F_MS", 0.0, "1", "NK missing-self susceptibility (share of inhibitory HLA ligands lost)", "product edit mapping; Blood Adv 2024;8:3416", "product"),
    _p("PD1_GAIN", 1.0, "1", "multiplier of exhaustion resistance from PD-1 knockout", "product edit mapping; assumed 1.0: PD-1 KO resists exhaustion in preclinical models but no human kinetic effect has been shown", "product"),
    _p("TCR_ALLO", 0.0, "1", "donor TCR present (alloreactive GvHD potential); 0 when TRAC is knocked out", "product edit mapping", "product"),
    # --- host-versus-graft rejection ---------------------------------------------------------
    _p("S_R", 0.01, "1/day", "priming of host T cells against foreign antigen on the product, per unit of host T cells left", "calibrated: with A_R, D_R and K_T, HLA-intact allogeneic cells (no alemtuzumab) reach well under the autologous peak after Flu/Cy, are lost within 2-4 weeks and barely expand without lymphodepletion (Dupouy2022: UCART19 persistence <= 28 d in 10/25, expansion and persistence lower without alemtuzumab, host T-cell AUC(0-28) the driver); no published HvG rate constants (Derippe 2024 not retrieved)", "rejection", 0.5),
    _p("A_R", 2.2, "1/day", "clonal expansion of primed host T cells per unit of foreign antigen", "calibrated: against a full HLA mismatch the primed response grows at A_R x FOREIGN - D_R = 1.2/d (doubling in about 14 h), so it acts within days of the infusion and not only after host T cells recover (Dupouy2022); for TyU19 (FOREIGN 0.12) A_R x FOREIGN / D_R = 0.26 < 1, no self-sustaining response, CAR-T detectable > 3 months (WangX2024)", "rejection", 0.3),
    _p("D_R", 1.0, "1/day", "contraction of the primed host response once its stimulus is gone", "assumed: effector T-cell responses contract over days after antigen clearance (as CAR-T effectors, Stein2019 t1/2 4.3 d, but faster for short-lived alloreactive effectors)", "rejection"),
    _p("K_STIM", 0.1, "cells/uL", "CAR-T level giving half-maximal stimulation of host T cells", "assumed: well below the CAR-T level after any dose (0.1 cells/uL for 1e6/kg), so the response is set by host T cells and HLA mismatch, not by the cell number (Dupouy2022: no link of UCART19 kinetics to cell dose)", "rejection"),
    _p("K_T", 0.5, "1/day", "CAR-T killing per unit primed host response", "calibrated: as S_R", "rejection", 0.3),
    _p("F_CAR", 0.02, "1", "foreign antigen of the CAR transgene (murine scFv) relative to a full HLA mismatch", "assumed: CD8 T-cell responses against the CAR transgene limited persistence in some patients (Turtle2016jci) and anti-CAR T cells stopped re-expansion on re-infusion (Erlangen 2025 case, Nat Med doi 10.1038/s41591-025-03718-3); far fewer host precursors than for direct allorecognition, so a small share", "rejection", 0.5),
    _p("K_NK", 0.3, "1/day", "NK missing-self kill rate at full NK recovery and F_MS = 1", "assumed: NK cells clear HLA class I-deficient cells within weeks of their recovery (TRAC/B2M-KO U-CAR-T19 failed through NK activation and killing, Cancer Immunol Immunother 2023, doi 10.1007/s00262-023-03586-1; HLA class I loss triggers NK recognition, Blood Adv 2024;8:3416); no kill rate published", "rejection", 0.3),
    _p("N_MS", 4.0, "1", "steepness of NK activation in the share of inhibitory HLA ligands lost", "assumed: NK cells kill when most inhibitory signals are gone; HLA-A/B-edited cells that keep HLA-C/E escape NK killing while B2M-KO cells do not (Cancer Immunol Immunother 2023, doi 10.1007/s00262-023-03586-1): with F_MS 0.2 (TyU19) the kill is 0.2^4 = 0.16% of the B2M-KO rate", "rejection"),
    # --- B lineage ----------------------------------------------------------------------------
    _p("B0", 100.0, "cells/uL", "baseline peripheral CD19+ B cells", "assumed: SLE B lymphopenia; healthy 100-500 cells/uL", "B lineage", 0.5, 1, 1500),
    _p("FA", 0.1, "1", "autoreactive (activated/memory) share of B cells", "assumed: memory/activated B cells are 10-30% of SLE B cells and only part of them autoreactive; no measured share", "B lineage", 0.3),
    _p("MTT_PRE", 55.0, "day", "marrow precursor to peripheral B maturation time", "calibrated: B cells back at 110 +/- 32 d after Erlangen Flu/Cy (Mackensen2022)", "B lineage", 0.25),
    _p("K_DB", 0.02, "1/day", "peripheral B-cell turnover", "Pan2019rtx", "B lineage", 0.2),
    _p("K_DIFF", 0.004, "1/day", "non-autoreactive B to plasmablast differentiation", "assumed: gives plasmablasts about 0.4% of B-cell numbers in a quiescent compartment; no measured rate", "B lineage"),
    _p("K_DIFFA", 0.05, "1/day", "autoreactive B to plasmablast differentiation", "assumed: activated autoreactive B differentiate more", "B lineage"),
    _p("G_A", 0.01, "1/day", "net regrowth rate of the autoreactive B pool at low density with full T-cell help (self-renewal minus turnover and differentiation; doubling 69 d)", "calibrated: after shallow depletion (rituximab-like) relapse follows B-cell repopulation by months (Lazarus2012: relapse delayed beyond repopulation, earlier with faster repopulation); assumed log-normal spread", "B lineage", 0.3),
    _p("EPS_A", 1e-05, "1/day", "recruitment of naive B into the autoreactive pool (with full help)", "assumed: naive B are rarely recruited into autoreactivity; small enough that the autoreactive pool regrows over years (drug-free remission up to 4 years in Erlangen follow-up)", "B lineage"),
    _p("F_NAIVE", 0.2, "1", "share of autoreactive regrowth and recruitment that needs no established T-cell help (naive restart)", "assumed: returning B cells are naive (Mackensen2022) and relapse after B-cell depletion comes with returning memory B or ICOS+ memory T help (Iwata2011); no measured share", "B lineage"),
    _p("K_AH", 0.04, "1/day", "turnover of autoreactive T-cell help (ICOS+ Tfh/germinal-centre support; t1/2 17 d)", "assumed: ICOS and CD40L on CD4+ T cells fall within 28 days of B-cell depletion and stay low in remission (Iwata2011); Tfh need B-cell antigen presentation to persist (Baumjohann2013)", "B lineage", 0.3),
    _p("A50_AH", 0.1, "1", "autoreactive B pool (fraction of baseline) that sustains half the maximal help", "assumed: help survives partial depletion and fades only under deep depletion (GomezMendez2018: complete response 47% with complete vs 13% with incomplete peripheral depletion; Tur2024: CAR-T, not rituximab, empties lymph nodes)", "B lineage"),
    _p("K_DPB", 0.2, "1/day", "CD19+ plasmablast loss (t1/2 3.5 d)", "assumed: short-lived plasmablasts live days (Andraud2012)", "plasma cells"),
    _p("F_PCN", 0.5, "1", "share of plasmablasts that mature into CD19- BCMA+ plasma cells", "assumed: half of plasmablasts mature into plasma cells, the rest die (Andraud2012 qualitative)", "plasma cells"),
    _p("K_DPCN", 0.035, "1/day", "loss of recently formed CD19- plasma cells (t1/2 20 d)", "assumed: short-lived plasma cells live weeks to months (Andraud2012)", "plasma cells"),
    _p("F_LL", 0.017, "1", "share of CD19- plasma cells entering the long-lived niche", "assumed: only a small share of new plasma cells wins a long-lived marrow niche (Andraud2012 qualitative); set with K_DLL so the long-lived pool is about 3.5 times the recently formed pool", "plasma cells"),
    _p("K_DLL", 0.00017, "1/day", "long-lived plasma cell loss (t1/2 11 y)", "Amanna2007 (tetanus antibody half-life 11 y; viral antigens decades); vaccine titres kept after CD19 CAR-T (Bhoj2016)", "plasma cells"),
    _p("F_CIRC_PCN", 0.1, "1", "share of recently formed CD19- plasma cells found in blood", "assumed: circulating BCMA+ plasma cells are mostly newly generated, migrating cells (Mei2012)", "plasma cells"),
    _p("F_CIRC_LL", 0.005, "1", "share of long-lived plasma cells found in blood", "assumed: long-lived plasma cells stay in marrow niches (Mei2012)", "plasma cells"),
    # --- antibodies, immune complexes, complement ----------------------------------------------
    _p("K_IGG", 0.033, "1/day", "IgG elimination (t1/2 21 d)", "Andersen2009", "humoral", 0.15),
    _p("F_DSDNA_SL", 0.95, "1", "share of anti-dsDNA made by short-lived (CD19+ derived) cells", "assumed: seroconversion after CD19 CAR-T (Mackensen2022) means most anti-dsDNA comes from CD19+ precursors", "humoral"),
    _p("F_IGG_SL", 0.23, "1", f"share of total IgG made by short-lived non-autoreactive plasma cells that B cells replenish (plasmablasts and recently formed plasma cells); above {SHORT_LIVED_IGG_CEILING:g} - F_IGG_AUTO it is capped (F_SL) so that long-lived plasma cells keep at least {LONG_LIVED_IGG_FLOOR:g} of total IgG", "assumed: total IgG falls by about a third after CD19 CAR-T and recovers once B cells return, while vaccine titres from long-lived plasma cells are kept (Bhoj2016; Barmettler2024: mean IgG 5.9 -> 3.6 g/L in haematology, an upper bound); with the disease-driven excess lost in remission (F_IGG_AUTO) the fall is F_IGG_SL + F_IGG_AUTO = a third (model 0.7.1; 0.3 before gave a 40% fall, beyond that upper bound); the between-patient spread (log-SD 0.3, as for FA) is assumed, no SLE spread having been found, so that the fall differs between patients instead of reaching one floor in all", "humoral", 0.3, 0, SHORT_LIVED_IGG_CEILING),
    _p("F_IGG_AUTO", 0.1, "1", "share of total IgG made by short-lived autoreactive plasma cells (the disease-driven excess)", "assumed: active SLE carries a polyclonal IgG excess that falls with remission; autoantibodies are a small share of total IgG", "humoral", 0.0, 0, SHORT_LIVED_IGG_CEILING),
    _p("IGG0", 11.0, "g/L", "baseline total IgG", "assumed: SLE reference", "humoral", 0.25, 2, 40),
    _p("K_IC", 1.0, "1/day", "immune complex turnover", "assumed: immune complexes are cleared within a day (fast compared with antibody turnover)", "humoral"),
    _p("FCR3", 0.509, "1/day", "C3 fractional catabolic rate (2.12%/h)", "Petz1969", "complement", 0.2),
    _p("FCR4", 0.5, "1/day", "C4 fractional catabolic rate", "assumed: no C4 turnover value retrieved; set equal to C3", "complement", 0.2),
    _p("C3_NORMAL", 1.3, "g/L", "C3 of the patient without immune complexes", "assumed: middle of the 0.9-1.8 g/L reference range; Petz1969 mean 1.43 g/L", "complement", 0.1),
    _p("C4_NORMAL", 0.25, "g/L", "C4 of the patient without immune complexes", "assumed: middle of the 0.1-0.4 g/L reference range", "complement", 0.15),
    # --- disease activity ---------------------------------------------------------------------
    _p("K_D", 0.06, "1/day", "turnover of systemic organ inflammation", "calibrated: SLEDAI <= 4 by about day 57 and median 0 at month 3 (Mackensen2022)", "disease", 0.3),
    _p("W_IC", 0.5, "1", "immune-complex share of the inflammatory drive (rest: autoreactive B/plasmablasts)", "assumed: equal weight of immune complexes and autoreactive B/plasmablast activity; no data separate them", "disease"),
    _p("K_DR", 0.04, "1/day", "turnover of renal inflammation (slower than systemic)", "calibrated: proteinuria <= 0.5 g/24h by month 3 in lupus nephritis (Mackensen2022: SLEDAI-2K 0 (range 2) at month 3 with nephritis in 5/5)", "disease", 0.3),
    _p("UPROT_RES", 0.1, "g/24h", "proteinuria left when renal inflammation is gone (chronic damage)", "assumed: some proteinuria stays from chronic glomerular damage after remission", "disease", 0.5),
    _p("THR_ARTH", 0.3, "1", "inflammation level under which arthritis resolves", "assumed: descriptor thresholds order resolution as seen clinically (joints and mucosa first, skin, serosa, then slow-growing hair); no SLE data quantify them", "disease descriptors"),
    _p("THR_RASH", 0.25, "1", "inflammation level under which rash resolves", "assumed: descriptor thresholds order resolution as seen clinically (joints and mucosa first, skin, serosa, then slow-growing hair); no SLE data quantify them", "disease descriptors"),
    _p("THR_ALOP", 0.15, "1", "inflammation level under which alopecia resolves (hair regrows slowly)", "assumed: descriptor thresholds order resolution as seen clinically (joints and mucosa first, skin, serosa, then slow-growing hair); no SLE data quantify them", "disease descriptors"),
    _p("THR_VASC", 0.25, "1", "inflammation level under which vasculitis resolves", "assumed: descriptor thresholds order resolution as seen clinically (joints and mucosa first, skin, serosa, then slow-growing hair); no SLE data quantify them", "disease descriptors"),
    _p("THR_MUC", 0.35, "1", "inflammation level under which mucosal ulcers resolve", "assumed: descriptor thresholds order resolution as seen clinically (joints and mucosa first, skin, serosa, then slow-growing hair); no SLE data quantify them", "disease descriptors"),
    _p("THR_SEROS", 0.3, "1", "inflammation level under which pleurisy/pericarditis resolve", "assumed: descriptor thresholds order resolution as seen clinically (joints and mucosa first, skin, serosa, then slow-growing hair); no SLE data quantify them", "disease descriptors"),
    _p("THR_MYOS", 0.25, "1", "inflammation level under which myositis resolves", "assumed: descriptor thresholds order resolution as seen clinically (joints and mucosa first, skin, serosa, then slow-growing hair); no SLE data quantify them", "disease descriptors"),
    _p("THR_RENAL", 0.3, "1", "renal inflammation under which casts, haematuria and pyuria resolve", "assumed: descriptor thresholds order resolution as seen clinically (joints and mucosa first, skin, serosa, then slow-growing hair); no SLE data quantify them", "disease descriptors"),
    # --- cytokines, fever, liver --------------------------------------------------------------
    _p("IL6_0", 3.0, "pg/mL", "baseline IL-6", "assumed: healthy < 7 pg/mL", "cytokines", 0.3),
    _p("K6", 3.96, "1/day", "IL-6 elimination (t1/2 4.2 h)", "Hardiansyah2019 (d_IL6)", "cytokines"),
    _p("P6", 3.5, "day per cells/uL", "IL-6 release (fold baseline production) per effector CAR-T cell/uL gained per day", "calibrated: any-grade CRS (fever) in 87% of 47 SLE patients pooled over 10 CD19 CAR-T studies (Temiz pooled analysis), 3/5 (Mackensen2022) and 11/15 (Muller2024) in the Erlangen series; CRS tracks expansion and antigen burden, not the cell number (Stein2019CK)", "cytokines", 0.8),
    _p("W_ACT", 0.01, "1/day", "width of the smooth positive part of net CAR-T growth (ACT)", "assumed: numerical smoothing (the right-hand side must stay smooth for the stiff solvers), small against net growth during expansion (about 1/day)", "cytokines"),
    _p("DTEMP", 3.0, "C", "maximal fever above 36.8 C driven by IL-6", "assumed: fever up to about 39.8 C in cytokine release (ASTCT grading, Lee 2019)", "cytokines"),
    _p("EC_TEMP", 25.0, "pg/mL", "IL-6 excess giving half the maximal fever", "calibrated: fever >= 38 C (CRS grade 1) in about 60% of autologous SLE patients (Mackensen2022 3/5; Muller 2024 NEJM 10/15) and any-grade CRS in 87% of 47 pooled SLE patients, against no CRS with TyU19 (0/6: WangX2024, WangD2025), the two bounding it from either side; 22 in model 0.5, 25 in 0.6, whose CAR-T peak is sharper and a little higher", "cytokines", 0.3),
    _p("IL6_HYPOTEN", 320.0, "pg/mL", "IL-6 above which hypotension needs fluids", "calibrated: CRS grade 2 in about 1 of 15 autologous patients (Muller 2024 NEJM); grade >= 2 CRS is rare in SLE; threshold set with P6 = 3.5 (IL-6 release scale); 280 in model 0.5, 320 in 0.6, whose CAR-T peak is sharper", "cytokines"),
    _p("IL6_HYPOXIA", 470.0, "pg/mL", "IL-6 above which low-flow oxygen is needed", "assumed: hypoxia needs a higher cytokine level than hypotension (ordering of ASTCT grades); no SLE patient needed oxygen in the Erlangen series", "cytokines"),
    _p("IL6_ICANS", 350.0, "pg/mL", "IL-6 above which the ICE score falls", "calibrated: ICANS grade 1 in 1/15 (Muller 2024 NEJM); extreme IL-6 stands in for the endothelial activation that drives ICANS; threshold set with P6 = 3.5 (IL-6 release scale)", "cytokines"),
    _p("PRED_BEFORE", 7.5, "mg/day", "prednisolone-equivalent dose before the infusion", "assumed: refractory SLE at enrolment on low-dose glucocorticoids; Erlangen and TyU19 protocols stop immunosuppression and glucocorticoids around lymphodepletion (Mackensen2022: drug-free remission)", "background therapy"),
    _p("ALT0", 20.0, "U/L", "baseline ALT", "assumed: reference range 7-40 U/L", "liver", 0.3),
    _p("AST0", 22.0, "U/L", "baseline AST", "assumed: reference range 8-40 U/L", "liver", 0.25),
    _p("K_ALT", 0.47, "1/day", "ALT plasma clearance", "Sherman2022", "liver"),
    _p("K_AST", 1.13, "1/day", "AST plasma clearance", "Sherman2022", "liver"),
    _p("K_GVH", 0.0024, "1/day per cells/uL", "priming of donor-TCR alloreactivity by circulating CAR-T (TRAC intact only)", "calibrated: acute GvHD in about 1 of 13 recipients of donor-derived, unedited CD19 CAR-T (Blood 2023;142:146), reached with host-versus-graft rejection acting (model 0.4: HLA-intact cells are lost within 1-2 weeks after standard Flu/Cy, so the drive per cell is 3 times that of 0.3); no quantitative GvHD model was found, so the link is a single assumed accumulation", "GvHD", 1.0),
    _p("D_GVH", 0.05, "1/day", "waning of donor-TCR alloreactivity", "assumed: GvHD after CAR-T, when it occurs, starts within weeks", "GvHD"),
    _p("K_LI", 0.35, "1/day", "resolution of drug-induced hepatocellular injury", "assumed: transaminase peaks 1-2 weeks after Flu/Cy; the model's drug-driven ALT peaks sooner, about 3 days after the cyclophosphamide dose (day 0 after the Erlangen regimen), as LI follows the drug (t1/2 7.6 h) and ALT follows LI (K_ALT); no published ALT course after Flu/Cy was found to settle the timing", "liver"),
    _p("S_LI_CY", 0.15, "L/mg/day", "hepatocellular injury per cyclophosphamide concentration", "calibrated: grade 3/4 liver dysfunction is among the commonest grade 3/4 events after Flu/Cy in TyU19 SLE (Cell Research 2025, n = 4); no published rate after Flu/Cy was found, so about 5-15% grade >= 3 (ALT > 5 x ULN) after the Erlangen regimen is assumed, with ALT above ULN in about half", "liver", 1.5),
    _p("EMAX_ALT", 3.0, "1", "maximal IL-6-driven transaminase rise (fold)", "assumed: CRS-related transaminitis is mostly grade 1 (up to 3x ULN)", "liver"),
    _p("EC50_ALT", 117.0, "pg/mL", "IL-6 excess giving half the maximal transaminase rise", "assumed: transaminases rise when IL-6 is clearly above baseline", "liver"),
    _p("AST_ALT", 0.8, "1", "AST rise relative to ALT rise from the same injury", "assumed: hepatocellular injury raises AST slightly less than ALT", "liver"),
    # --- target antigens (declared last: a patient's random effects follow parameter order) --
    _p("THETA_PC", 1.0, "1", "BCMA-directed kill of CD19- plasma cells (recent and long-lived, in marrow) relative to blood targets", "assumed: 1, marrow plasma cells are reached as blood targets are: BCMA CAR-T clear marrow BCMA+ cells by a median day 28 (BloodAdv2021bcma) and long-lived plasma-cell autoantibodies by month 3 (WangW2024ard)", "CAR-T"),
    _p("TCR", 1.0, "1", "endogenous alpha-beta TCR present on the CAR-T cells (1); 0 when TRAC is knocked out", "product edit mapping", "product"),
    _p("H15_TCRKO", 0.66, "1", "share of the homeostatic-cytokine drive of CAR-T proliferation kept by cells without a TCR", "calibrated: TyU19 (TRAC knocked out) peaks at day 14 (WangD2025med) against day 9-10 for autologous products (Stein2019), with CRS in at most 46% after the low-intensity regimen (0/6, WangX2024, WangD2025), and HLA-intact TRAC-knockout cells still persisting more after deeper lymphodepletion (Dupouy2022) (targets tyu19_tmax, tyu19_crs_none, hla_intact_host_t_depletion; 0.75 in model 0.6, 0.66 in 0.7, where the antigen-driven route F_AI also acts after lymphodepletion and adds to the early expansion); mechanism: lymphopenia-induced (homeostatic) T-cell proliferation needs TCR contact with self-MHC as well as IL-7/IL-15 (Goldrath & Bevan 1999 Immunity 11:183; Tan 2001 PNAS 98:8732), and CD19 CAR-T cells with the TCR knocked out persisted less in vivo than TCR-bearing ones (Stenger 2020 Blood 136:1407); the CAR's tonic signal keeps part of it", "CAR-T", 0.2),
    _p("TGT_CD19", 1.0, "1", "1 when the CAR targets CD19 (B precursors, B cells, plasmablasts)", "product target mapping; Mei2012 (CD19 on B precursors, B cells and plasmablasts, not on CD19- plasma cells)", "product"),
    _p("TGT_BCMA", 0.0, "1", "1 when the CAR targets BCMA (plasmablasts and CD19- plasma cells, marrow long-lived ones included)", "product target mapping; WangW2024ard", "product"),
    # --- supportive and rescue drugs given by protocol rules (declared last, as above) ---------
    _p("V_TCZ", 7.1, "L", "tocilizumab volume (central 3.72 + peripheral 3.35 L, one compartment)", "Actemra2017", "supportive drugs"),
    _p("K_TCZ", 0.063, "1/day", "tocilizumab elimination (t1/2 11 d)", "Actemra2017 (concentration-dependent half-life up to 11-13 d; one rate taken)", "supportive drugs"),
    _p("IC50_TCZ", 0.1, "mg/L", "tocilizumab concentration blocking half of IL-6 receptor signalling", "assumed: free sIL-6R is saturated above about 1 mg/L (Nishimoto2008), i.e. about 90% blockade; after 8 mg/kg the concentration stays above it for weeks", "supportive drugs"),
    _p("F6R_TCZ", 0.5, "1", "share of IL-6 elimination that is IL-6 receptor-mediated (blocked by tocilizumab)", "assumed: serum IL-6 rises after tocilizumab because receptor-mediated clearance is blocked (Nishimoto2008); a share of 0.5 doubles IL-6 at full blockade, no measured share", "supportive drugs"),
    _p("K_GC", 0.46, "1/day", "loss of glucocorticoid action (biological t1/2 36 h), prednisone-equivalent", "Meikle1977 (biological half-life: dexamethasone 36-54 h, methylprednisolone 12-36 h; one rate for both)", "supportive drugs"),
    _p("ED50_GC", 100.0, "mg", "glucocorticoid in the body (prednisone-equivalent) giving half the maximal effect", "assumed: dexamethasone 10 mg (about 67 mg prednisone-equivalent) every 6 h for CRS (Lee2019) and a methylprednisolone pulse (500-1000 mg) act near their maximum", "supportive drugs"),
    _p("IMAX_GC6", 0.8, "1", "maximal glucocorticoid inhibition of CAR-T-driven IL-6 release", "assumed: corticosteroids lowered severe CRS when given early (Topp2021, Oluwole2021); no inhibition constant published", "supportive drugs"),
    _p("IMAX_GCCAR", 0.2, "1", "maximal glucocorticoid inhibition of CAR-T proliferation", "assumed small: steroids had no effect on the expansion rate in popCK (Stein2019) and early or prophylactic steroids left CAR-T expansion comparable (Topp2021, Oluwole2021); high cumulative doses are reported to blunt it", "supportive drugs"),
    _p("K_GCD", 0.3, "1/day", "maximal glucocorticoid suppression of lupus organ inflammation", "assumed: a methylprednisolone pulse (3 x 500-1000 mg) brings a flare down within days to weeks; no SLE dose-response constant was found", "supportive drugs"),
    _p("V_GCSF", 0.15, "L/kg", "filgrastim volume of distribution", "Neupogen1991", "supportive drugs"),
    _p("K_GCSF", 4.75, "1/day", "filgrastim elimination (t1/2 3.5 h)", "Neupogen1991", "supportive drugs"),
    _p("EC50_GCSF", 5.0, "ug/L", "filgrastim concentration giving half the maximal effect on granulopoiesis", "assumed: about a seventh of the peak after 5 ug/kg", "supportive drugs"),
    _p("EMAX_GCSF", 2.0, "1", "maximal rise of neutrophil precursor proliferation and maturation rate under G-CSF", "assumed: G-CSF shortens the marrow neutrophil transit time by several days (Price1996); at full effect the 5.2-day mean transit time falls to 1.7 days", "supportive drugs"),
    # --- CAR-T antigen threshold (model 0.6; declared last, as above) ------------------------
    _p("N_AG", 4.0, "1", "steepness (Hill coefficient) of antigen-driven CAR-T proliferation in the antigen", "calibrated: proliferation needs antigen above about K_AG, so that the CD19+ precursors still coming out of the marrow during aplasia (a few cells/uL-eq) do not hold the effectors up after the peak and they contract with an initial half-life of 4.3-5.0 d (Stein2019, Ogasawara2021); with N_AG = 1 (model 0.5) the apparent half-life over the week after the peak was about 33 d. Antigen-threshold (digital) activation of CAR-T is assumed; no human dose-response of CAR-T proliferation in antigen density was found", "CAR-T"),
    # --- extra antigen-driven, cytokine-independent CAR-T proliferation (model 0.6; declared last, as above)
    _p("K_AI", 0.3, "1", "antigen load, as a share of the patient's full target compartment (AG0), giving half of the antigen-driven cytokine-independent CAR-T proliferation (F_AIX); first order", "calibrated (model 0.7), with F_AIX: the drive saturates in the antigen, so the B cells that lymphodepletion removes lower it by a fifth to a third (0.77 of F_AIX at a full compartment, 0.74 after a quarter of the low-intensity regimen, 0.63 after the whole of it, about 0.5 of AG0 left, 0.60 after Erlangen Flu/Cy, 0.45 of AG0 left, and 0.50 after the standard regimen, 0.3 of AG0 left): a second-order loss beside what lymphodepletion gives (fewer host T and NK cells, more IL-7/IL-15). Model 0.6 used 0.9 with N_AI 8, a switch that removed the drive once a light regimen had taken part of the compartment, before homeostatic cytokines had risen, so that a light regimen did worse than none (TyU19 1e6/kg, remission by month 6 91.5% without lymphodepletion, 73-77% at intensity 0.125-0.25 of the none-reduced-Erlangen path). Relative to the patient's own compartment, as in 0.6 (an absolute threshold made patients with many B cells expand faster after lymphodepletion too); recalled, unverified: CAR-T expansion rises with the antigen (tumour) burden in oncology", "CAR-T"),
    _p("F_AIX", 0.38, "1", "extra share of antigen-driven CAR-T proliferation on the cytokine-independent route at saturating antigen (autocrine IL-2 of strongly stimulated cells), lost with exhaustion", "calibrated (model 0.7): TyU19 without lymphodepletion depletes B cells and brings SLEDAI-2K to 0 by month 3 (typical patient: below 1/uL from day 17, peak 6.9 cells/uL on day 15 against 9.8 on day 13 after the low-intensity regimen; WangD2025med [V2]: efficacy without lymphocyte clearance; Cell Research 2025 [V2]: lymphodepletion lighter than usual and in some patients none, 4/4 SELENA-SLEDAI 0; target tyu19_no_ld_sledai2k_m6); in vivo CD19 CAR without lymphodepletion gave B cells < 1/uL in SLE (NEJM 2025 [V2]); not higher, so that it stays below the homeostatic-cytokine route after the low-intensity regimen in most patients and the no-LD expansion stays weaker than the post-LD one (at 0.42 the typical no-LD peak reached 82% of the post-LD peak); recalled, unverified: strongly stimulated T cells make their own IL-2 (Smith 1988 Science 240:1169)", "CAR-T"),
    _p("N_AI", 1.0, "1", "steepness (Hill coefficient) of the antigen-driven cytokine-independent drive in the relative antigen load", "assumed: first order (a CAR-T cell's encounters with its targets rise in proportion to their density and saturate when they are many); 8 in model 0.6, a switch between a full and a partly emptied compartment that made light lymphodepletion worse than none", "CAR-T"),
    _p("X_AI", 0.5, "1", "exhaustion that halves (second order) the extra cytokine-independent drive", "assumed: IL-2 production is the first function exhausted T cells lose (recalled, unverified: Wherry 2011 Nat Immunol 12:492), so the drive fades within about a week of strong stimulation (X about 0.5 by day 7) and the persisting, exhausted CAR-T cannot use it to re-expand on B cells returning at the end of aplasia", "CAR-T"),
    _p("K_QC", 0.05, "cells/uL", "CAR-T level giving half of the extra cytokine-independent drive (IL-2 shared among activated CAR-T; second order in the CAR-T level)", "assumed: IL-2 made by activated T cells acts on their neighbours, so its support of proliferation depends on the density of activated cells (recalled, unverified: T-cell quorum sensing through IL-2, Polonsky 2018 Science 360:eaaj1853; Zenke 2020 Cell 181:1080); set below the infused level (0.12 cells/uL at 1e6/kg in 62 kg) so that the drive acts from the infusion, and far above the residue left once the cells are eliminated, which therefore cannot regrow on it", "CAR-T"),
    _p("P_MX", 8.0, "1", "exponent of the smooth maximum that combines the cytokine-independent (F_AI) and homeostatic-cytokine (F_CY) routes of antigen-driven CAR-T proliferation", "assumed: the routes are alternatives, not additive: autocrine IL-2 and IL-7/IL-15 are common-gamma-chain cytokines (IL-2 and IL-15 share the IL-2R beta chain) signalling through JAK1/JAK3-STAT5 (recalled, unverified: Rochman Y, Spolski R, Leonard WJ. Nat Rev Immunol 2009;9:480), so the stronger signal sets the division rate; at 8 the combined share exceeds the larger route by at most 9% (when both are equal). Model 0.6 added them, so that an antigen drive strong enough to work without lymphodepletion would have sped every post-lymphodepletion expansion as well; the smooth maximum keeps the post-lymphodepletion kinetics of 0.6 wherever the cytokine route is the stronger (autologous cells after any Flu/Cy regimen), and lets the stronger route carry the expansion where cytokines are still low (no or light lymphodepletion)", "CAR-T"),
    # --- BCMA on the autoreactive activated/memory B pool (model 0.7.4; declared last, as above)
    _p("THETA_BA", 0.5, "1", "BCMA-directed kill of autoreactive activated/memory B cells (BA) relative to the CAR's kill of blood targets (KILL, which the plasma cells' kill THETA_PC*KILL equals at the declared THETA_PC = 1); acts only for a CAR that targets BCMA and not CD19 (a CD19 CAR kills them in full already)", "assumed: BCMA is on the B cells that feed the plasma-cell pool: raised on every B-cell subset in SLE, more on switched and unswitched memory than on naive B cells, and correlated with plasmablast numbers, anti-dsDNA and complement consumption (IJMS2024bcma); anti-BCMA CAR-T left all 40 of 40 myeloma patients B-cell aplastic (nadir on a median day 7, aplasia a median 70 d; BloodAdv2021bcma). BCMA on these cells is denser than on naive B cells and sparser than on plasma cells; no relation of CAR-T kill to BCMA density was found, so half the kill of blood targets (that of plasma cells at THETA_PC = 1) is taken. The outcome does not hang on the value: in 30 virtual SLE patients after standard Flu/Cy (the behaviour-test cohort) every value from 0.25 to 1 takes the pool below 1% of baseline by day 28 and SLEDAI-2K to a median 0 by month 9; at 0.1 the median is still 0 (a quarter of patients at 6 or more), at 0.05 or less the pool and its T-cell help survive in most patients and the disease comes back", "CAR-T"),
)

# Uncertainty of typical values (standard error of the log value), for replicate trials drawn from
# the model's declared uncertainty ([uncertainty] source = "model", docs/protocol.md). Declared
# for the parameters that carry the levers and were set against small case series; every other
# parameter is taken as known. All are assumed: no population analysis of CAR-T in SLE reports
# standard errors; each value says what it was set against.
TYPICAL_VALUE_UNCERTAINTY = {
    "RHO": (0.15, "assumed: set against peak timing in case series of 3-15 patients; relative SEs of 10-20% are typical of the popPK proliferation terms of Stein 2019"),
    "K_E": (0.1, "assumed: effector contraction from the tisagenlecleucel popPK (Stein 2019), a well-estimated alpha phase"),
    "EC15": (0.3, "assumed: the homeostatic gate is set against regimen contrasts with no direct SLE measurement"),
    "H15_TCRKO": (0.3, "assumed: set against TyU19's peak day in 3 patients"),
    "X50": (0.2, "assumed: set against B-cell return at 110 +/- 32 d in 5 patients (SE of that mean about 13%)"),
    "MTT_PRE": (0.2, "assumed: as X50, set against the same B-cell return"),
    "BETA_M": (0.2, "assumed: as X50, set against the same B-cell return (model 0.6: the persisting CAR-T falling below the kill threshold end aplasia)"),
    "K_EM": (0.4, "assumed: only a lower bound is known (Chaudhury 2020)"),
    "P6": (0.25, "assumed: set against any-grade CRS in 41 of 47 pooled SLE patients and two smaller series"),
    "FAUC_H": (0.25, "assumed: the fludarabine-exposure threshold of 13.8-14 mg.h/L comes from oncology cohorts (Fabrizio 2022, Dekker 2022)"),
}
PARAMETERS = tuple(
    replace(p, se_log=TYPICAL_VALUE_UNCERTAINTY[p.name][0], se_source=TYPICAL_VALUE_UNCERTAINTY[p.name][1])
    if p.name in TYPICAL_VALUE_UNCERTAINTY else p for p in PARAMETERS)

# Names, units and meanings come from the patient vocabulary (cartwin/vocabulary.py).
COVARIATES = patient_covariates(
    "WT", "CRCL", "DSDNA0", "C3_0", "C4_0", "UPROT0", "PGA0",
    "ARTH0", "RASH0", "ALOP0", "VASC0", "MUC0", "PLEUR0", "PERIC0", "MYOS0", "CASTS0", "HEMAT0", "PYUR0",
)


def _a(name, expression, unit, description):
    return Assignment(name, expression, unit, description)


ASSIGNMENTS = (
    # per-patient constants
    _a("ALLOM", "(WT/70)**0.75", "1", "allometric clearance scale"),
    _a("CL_F", "24*(CL_F_NR + CL_F_R*CRCL*0.06)*ALLOM", "L/day", "F-ara-A total clearance (CrCl mL/min x 0.06 = L/h)"),
    _a("V1_FS", "V1_F*WT/70", "L", "F-ara-A central volume, weight-scaled"),
    _a("V2_FS", "V2_F*WT/70", "L", "F-ara-A peripheral volume 1, weight-scaled"),
    _a("V3_FS", "V3_F*WT/70", "L", "F-ara-A peripheral volume 2, weight-scaled"),
    _a("Q2_FD", "24*Q2_F*ALLOM", "L/day", "F-ara-A inter-compartmental clearance 1"),
    _a("Q3_FD", "24*Q3_F*ALLOM", "L/day", "F-ara-A inter-compartmental clearance 2"),
    _a("CL_CYD", "24*CL_CY*WT", "L/day", "cyclophosphamide clearance"),
    _a("V_CYS", "V_CY*WT", "L", "cyclophosphamide volume"),
    _a("KTR_N", "4/MTT_N", "1/day", "neutrophil transit rate"),
    _a("KTR_P", "4/MTT_P", "1/day", "platelet transit rate"),
    _a("K_MAT", "1/MTT_PRE", "1/day", "precursor maturation rate"),
    _a("BN0", "B0*(1 - FA)", "cells/uL", "baseline non-autoreactive B"),
    _a("BA0", "B0*FA", "cells/uL", "baseline autoreactive B"),
    _a("BPRE0", "BN0*(K_DB + K_DIFF + EPS_A)/K_MAT", "cells/uL-eq", "baseline marrow precursors (steady state)"),
    _a("S_PRE", "K_MAT*BPRE0", "cells/uL/day", "precursor production (steady state)"),
    _a("EPS_AR", "EPS_A*BN0/BA0", "1/day", "baseline naive recruitment relative to the autoreactive pool"),
    _a("PB0", "K_DIFF*BN0/K_DPB", "cells/uL-eq", "baseline non-autoreactive plasmablasts"),
    _a("PBA0", "K_DIFFA*BA0/K_DPB", "cells/uL-eq", "baseline autoreactive plasmablasts"),
    _a("PCN0", "F_PCN*K_DPB*PB0/K_DPCN", "cells/uL-eq", "baseline CD19- recently formed plasma cells (non-autoreactive)"),
    _a("PCNA0", "F_PCN*K_DPB*PBA0/K_DPCN", "cells/uL-eq", "baseline CD19- recently formed plasma cells (autoreactive)"),
    _a("LL0", "F_LL*K_DPCN*(PCN0 + PCNA0)/K_DLL", "cells/uL-eq", "baseline long-lived plasma cells"),
    _a("AG0", "TGT_CD19*(BPRE0 + BN0 + BA0 + PB0 + PBA0) + TGT_BCMA*(PB0 + PBA0 + PCN0 + PCNA0 + LL0) + TGT_BCMA*(1 - TGT_CD19)*THETA_BA*BA0", "cells/uL-eq", "baseline antigen that the product's CAR recognises (the full target compartment)"),
    _a("P_DS_SL", "F_DSDNA_SL*K_IGG*DSDNA0/PBA0", "IU/mL/day per cells/uL", "anti-dsDNA production by autoreactive plasmablasts"),
    _a("P_DS_LL", "(1 - F_DSDNA_SL)*K_IGG*DSDNA0/LL0", "IU/mL/day per cells/uL", "anti-dsDNA production by long-lived plasma cells"),
    _a("F_SL", f"Min(F_IGG_SL, {SHORT_LIVED_IGG_CEILING:g} - F_IGG_AUTO)", "1", f"share of total IgG from short-lived non-autoreactive cells, capped so that the long-lived plasma cells keep at least {LONG_LIVED_IGG_FLOOR:g} of it whatever F_IGG_AUTO is"),
    _a("Q_SL", "F_SL*K_IGG*IGG0/(PB0 + PCN0)", "g/L/day per cells/uL", "IgG production by short-lived non-autoreactive cells"),
    _a("Q_SLA", "F_IGG_AUTO*K_IGG*IGG0/(PBA0 + PCNA0)", "g/L/day per cells/uL", "IgG production by short-lived autoreactive cells (the disease-driven IgG excess)"),
    _a("Q_LL", "(1 - F_SL - F_IGG_AUTO)*K_IGG*IGG0/LL0", "g/L/day per cells/uL", "IgG production by long-lived plasma cells"),
    _a("E3", "Max(C3_NORMAL/C3_0 - 1, 0)", "1", "C3 consumption per unit immune complex"),
    _a("E4", "Max(C4_NORMAL/C4_0 - 1, 0)", "1", "C4 consumption per unit immune complex"),
    _a("L0", "H0 + NK0", "cells/uL", "baseline lymphocyte sink of homeostatic cytokines"),
    # dynamic quantities
    _a("C_F", "A_F1/V1_FS", "mg/L", "F-ara-A plasma concentration"),
    _a("C_CY", "A_CY/V_CYS", "mg/L", "cyclophosphamide plasma concentration"),
    _a("K_LD_T", "S_T_F*C_F + S_T_CY*C_CY", "1/day", "lymphodepleting kill of T cells"),
    _a("K_LD_NK", "S_NK_F*C_F + S_NK_CY*C_CY", "1/day", "lymphodepleting kill of NK cells"),
    _a("K_LD_B", "S_B_F*C_F + S_B_CY*C_CY", "1/day", "lymphodepleting kill of the B lineage"),
    _a("E_N", "SLOPE_N_F*C_F + SLOPE_N_CY*C_CY", "1", "drug effect on neutrophil precursors"),
    _a("CT", "CE + CM", "cells/uL", "total CAR-T"),
    _a("BTOT", "BPRE + B + BA + PB + PBA", "cells/uL", "CD19+ antigen"),
    _a("BCMATOT", "PB + PBA + PCN + PCNA + LL", "cells/uL-eq", "BCMA+ antigen: plasmablasts and CD19- plasma cells"),
    _a("AG", "TGT_CD19*BTOT + TGT_BCMA*BCMATOT + TGT_BCMA*(1 - TGT_CD19)*THETA_BA*BA", "cells/uL-eq", "antigen that the product's CAR recognises (the autoreactive activated/memory B cells once: by CD19 or, for a BCMA-only CAR, by the BCMA share THETA_BA)"),
    _a("F_AG", "AG**N_AG/(AG**N_AG + K_AG**N_AG)", "1", "antigen stimulation of CAR-T"),
    _a("F_AI", "F15_MIN + F_AIX*AG**N_AI/(AG**N_AI + (K_AI*AG0)**N_AI)*X_AI**2/(X**2 + X_AI**2)*CT**2/(CT**2 + K_QC**2)", "1", "share of antigen-driven CAR-T proliferation on the cytokine-independent route (autocrine IL-2): saturating in the antigen load, lost with exhaustion, needing a density of CAR-T"),
    _a("F_CY", "F15_MIN + (1 - F15_MIN)*(TCR + (1 - TCR)*H15_TCRKO)*IL15**N15/(IL15**N15 + EC15**N15)", "1", "share of antigen-driven CAR-T proliferation on the homeostatic-cytokine route (weaker for cells without a TCR)"),
    _a("F_15", "(F_AI**P_MX + F_CY**P_MX)**(1/P_MX)", "1", "share of antigen-driven CAR-T proliferation: the stronger of the cytokine-independent and homeostatic-cytokine routes (a smooth maximum)"),
    _a("FOREIGN", "ALLO*F_HLA + F_CAR", "1", "antigen on the product that host T cells can recognise: mismatched HLA plus the CAR transgene"),
    _a("STIM", "CT/(CT + K_STIM)", "1", "stimulation of host T cells by the infused cells"),
    _a("F_X", "1/(1 + X/(X50*PD1_GAIN))", "1", "proliferation left by exhaustion (PD-1 knockout raises resistance)"),
    _a("K_REJ", "K_T*R + ALLO*K_NK*F_MS**N_MS*NK/NK0", "1/day", "host kill of CAR-T: primed host T cells (alloreactive or anti-CAR) and NK missing-self"),
    _a("KILL", "K_KILL*CT**2/(CT**2 + KC_KILL**2)", "1/day", "CAR-T kill of a target-antigen-bearing cell, by effector and persisting CAR-T alike; steep (second order) at low CAR-T levels, so that aplasia ends when the persisting CAR-T fall below a few cells/uL"),
    _a("KILL19", "TGT_CD19*KILL", "1/day", "kill of CD19+ B precursors and B cells"),
    _a("KILLPB", "KILL*(1 - (1 - THETA_PB*TGT_CD19)*(1 - TGT_BCMA))", "1/day", "kill of plasmablasts (CD19+ and BCMA+: either target suffices)"),
    _a("KILLBA", "KILL*(1 - (1 - TGT_CD19)*(1 - THETA_BA*TGT_BCMA))", "1/day", "kill of autoreactive activated/memory B cells (CD19+, and BCMA+ in the share THETA_BA: either target suffices)"),
    _a("KILLPC", "THETA_PC*TGT_BCMA*KILL", "1/day", "kill of CD19- BCMA+ plasma cells"),
    _a("HELP", "F_NAIVE + (1 - F_NAIVE)*AH", "1", "autoreactive regrowth and recruitment left at the current T-cell help (1 at baseline, F_NAIVE with none)"),
    _a("R_AH", "K_DB + K_DIFFA + G_A*HELP", "1/day", "autoreactive B self-renewal at low density: replaces turnover and differentiation, plus net regrowth scaled by the help left"),
    _a("E_GC", "A_GC/(A_GC + ED50_GC)", "1", "glucocorticoid effect (share of maximal)"),
    _a("F_GC", "1 - IMAX_GCCAR*E_GC", "1", "CAR-T proliferation left under glucocorticoids"),
    _a("PROL_C", "RHO*F_AG*F_15*F_X*F_GC", "1/day", "division rate of antigen-stimulated CAR-T"),
    _a("G_CE", "PROL_C - K_E - K_EM", "1/day", "net intrinsic growth rate of effector CAR-T (positive while they expand)"),
    _a("ACT", "0.5*(G_CE + sqrt(G_CE**2 + W_ACT**2))*CE", "cells/uL/day", "net growth of the effector CAR-T pool while it expands (the activation rate that releases cytokines; a smooth positive part, near 0 during contraction)"),
    _a("IL6X", "IL6 - IL6_0", "pg/mL", "IL-6 above baseline"),
    _a("C_TCZ", "A_TCZ/V_TCZ", "mg/L", "tocilizumab serum concentration"),
    _a("INH_TCZ", "C_TCZ/(C_TCZ + IC50_TCZ)", "1", "share of IL-6 receptor signalling blocked by tocilizumab"),
    _a("IL6S", "IL6X*(1 - INH_TCZ)", "pg/mL", "IL-6 excess that still signals (fever, hypotension, hypoxia); tocilizumab does not reach the brain, so the ICE score follows serum IL-6"),
    _a("C_GCSF", "A_GCSF/(V_GCSF*WT)", "ug/L", "filgrastim serum concentration"),
    _a("KTR_NG", "KTR_N*(1 + EMAX_GCSF*C_GCSF/(C_GCSF + EC50_GCSF))", "1/day", "neutrophil precursor proliferation and transit rate under G-CSF"),
)


def _s(name, unit, description, initial, rate, group):
    return State(name, unit, description, initial, rate, group)


STATES = (
    _s("A_F1", "mg", "F-ara-A, central", "0", "-(CL_F + Q2_FD)*C_F - Q3_FD*C_F + Q2_FD*A_F2/V2_FS + Q3_FD*A_F3/V3_FS", "fludarabine PK"),
    _s("A_F2", "mg", "F-ara-A, peripheral 1", "0", "Q2_FD*(C_F - A_F2/V2_FS)", "fludarabine PK"),
    _s("A_F3", "mg", "F-ara-A, peripheral 2", "0", "Q3_FD*(C_F - A_F3/V3_FS)", "fludarabine PK"),
    _s("FAUC", "mg*h/L", "cumulative F-ara-A plasma AUC (the exposure of Fabrizio 2022 and Dekker 2022)", "0", "24*C_F", "fludarabine PK"),
    _s("A_CY", "mg", "cyclophosphamide", "0", "-CL_CYD*C_CY", "cyclophosphamide PK"),
    _s("PROL", "10^9/L", "neutrophil precursors, proliferating", "ANC0", "KTR_NG*PROL*(1 - E_N)*(ANC0/NEUTC)**GAMMA_N - KTR_NG*PROL", "myelosuppression"),
    _s("TN1", "10^9/L", "neutrophil transit 1", "ANC0", "KTR_NG*(PROL - TN1)", "myelosuppression"),
    _s("TN2", "10^9/L", "neutrophil transit 2", "ANC0", "KTR_NG*(TN1 - TN2)", "myelosuppression"),
    _s("TN3", "10^9/L", "neutrophil transit 3", "ANC0", "KTR_NG*(TN2 - TN3)", "myelosuppression"),
    _s("NEUTC", "10^9/L", "circulating neutrophils", "ANC0", "KTR_NG*TN3 - KTR_N*NEUTC", "myelosuppression"),
    _s("PPROL", "10^9/L", "megakaryocyte precursors", "PLT0", "KTR_P*PPROL*(1 - PLT_SENS*E_N)*(PLT0/PLTC)**GAMMA_N - KTR_P*PPROL", "myelosuppression"),
    _s("TP1", "10^9/L", "platelet transit 1", "PLT0", "KTR_P*(PPROL - TP1)", "myelosuppression"),
    _s("TP2", "10^9/L", "platelet transit 2", "PLT0", "KTR_P*(TP1 - TP2)", "myelosuppression"),
    _s("PLTC", "10^9/L", "circulating platelets", "PLT0", "KTR_P*(TP2 - PLTC)", "myelosuppression"),
    _s("H", "cells/uL", "host T cells", "H0", "R_H/(1 + (FAUC/FAUC_H)**2)*H*log(H0/(H + CT)) - K_LD_T*H", "host lymphocytes"),
    _s("NK", "cells/uL", "host NK cells", "NK0", "R_NK*NK*log(NK0/NK) - K_LD_NK*NK", "host lymphocytes"),
    _s("IL15", "fold baseline", "homeostatic cytokines (IL-7/IL-15)", "1", "K15*FOLD15 - K15*IL15 - K15*(FOLD15 - 1)*(H + NK + CT)/L0*IL15", "homeostatic cytokines"),
    _s("CE", "cells/uL", "effector CAR-T", "0", "PROL_C*CE - (K_E + K_EM)*CE + K_ME*F_AG*CM - (K_REJ + K_LD_T)*CE", "CAR-T"),
    _s("CM", "cells/uL", "memory (persistent) CAR-T", "0", "K_EM*CE - BETA_M*CM - K_ME*F_AG*CM - (K_REJ + K_LD_T)*CM", "CAR-T"),
    _s("X", "1", "CAR-T exhaustion from cumulative antigen stimulation", "0", "K_X*F_AG*CT/(CT + K_XC) - D_X*X", "CAR-T"),
    _s("R", "1", "primed host T-cell response against the product (alloreactive and anti-CAR)", "0", "(S_R*H/H0 + A_R*R)*FOREIGN*STIM - D_R*R", "rejection"),
    _s("BPRE", "cells/uL-eq", "CD19+ marrow B precursors", "BPRE0", "S_PRE - K_MAT*BPRE - (KILL19 + K_LD_B)*BPRE", "B lineage"),
    _s("B", "cells/uL", "non-autoreactive peripheral B cells", "BN0", "K_MAT*BPRE - (K_DB + K_DIFF)*B - EPS_A*HELP*B - (KILL19 + K_LD_B)*B", "B lineage"),
    _s("BA", "cells/uL", "autoreactive activated/memory B cells", "BA0", "R_AH*BA - (G_A + EPS_AR)*BA**2/BA0 + EPS_A*HELP*B - (K_DB + K_DIFFA)*BA - (KILLBA + K_LD_B)*BA", "B lineage"),
    _s("AH", "1", "T-cell help for the autoreactive B pool (ICOS+ Tfh/germinal-centre support), normalised to baseline", "1", "K_AH*((BA/BA0)*(1 + A50_AH)/(BA/BA0 + A50_AH) - AH)", "B lineage"),
    _s("PB", "cells/uL-eq", "non-autoreactive CD19+ plasmablasts", "PB0", "K_DIFF*B - K_DPB*PB - (KILLPB + K_LD_B)*PB", "plasma cells"),
    _s("PBA", "cells/uL-eq", "autoreactive CD19+ plasmablasts", "PBA0", "K_DIFFA*BA - K_DPB*PBA - (KILLPB + K_LD_B)*PBA", "plasma cells"),
    _s("PCN", "cells/uL-eq", "recently formed CD19- BCMA+ plasma cells from non-autoreactive plasmablasts", "PCN0", "F_PCN*K_DPB*PB - (K_DPCN + KILLPC)*PCN", "plasma cells"),
    _s("PCNA", "cells/uL-eq", "recently formed CD19- BCMA+ plasma cells from autoreactive plasmablasts", "PCNA0", "F_PCN*K_DPB*PBA - (K_DPCN + KILLPC)*PCNA", "plasma cells"),
    _s("LL", "cells/uL-eq", "long-lived CD19- BCMA+ plasma cells (marrow niche)", "LL0", "F_LL*K_DPCN*(PCN + PCNA) - (K_DLL + KILLPC)*LL", "plasma cells"),
    _s("DSDNA", "IU/mL", "anti-dsDNA IgG", "DSDNA0", "P_DS_SL*PBA + P_DS_LL*LL - K_IGG*DSDNA", "humoral"),
    _s("IGG", "g/L", "total IgG", "IGG0", "Q_SL*(PB + PCN) + Q_SLA*(PBA + PCNA) + Q_LL*LL - K_IGG*IGG", "humoral"),
    _s("IC", "1", "immune complexes, normalised to baseline", "1", "K_IC*(DSDNA/DSDNA0 - IC)", "humoral"),
    _s("C3", "g/L", "complement C3", "C3_NORMAL/(1 + E3)", "FCR3*C3_NORMAL - FCR3*(1 + E3*IC)*C3", "complement"),
    _s("C4", "g/L", "complement C4", "C4_NORMAL/(1 + E4)", "FCR4*C4_NORMAL - FCR4*(1 + E4*IC)*C4", "complement"),
    _s("D", "1", "systemic organ inflammation, normalised to baseline", "1", "K_D*(W_IC*IC + (1 - W_IC)*(BA + PBA)/(BA0 + PBA0) - D) - K_GCD*E_GC*D", "disease"),
    _s("DR", "1", "renal inflammation, normalised to baseline", "1", "K_DR*(W_IC*IC + (1 - W_IC)*(BA + PBA)/(BA0 + PBA0) - DR) - K_GCD*E_GC*DR", "disease"),
    _s("IL6", "pg/mL", "serum IL-6", "IL6_0", "K6*IL6_0*(1 + P6*ACT*(1 - IMAX_GC6*E_GC)) - K6*(1 - F6R_TCZ*INH_TCZ)*IL6", "cytokines"),
    _s("GVH", "1", "donor-TCR alloreactivity against the host (GvHD drive; stays 0 when TRAC is knocked out)", "0", "TCR_ALLO*K_GVH*(CE + CM) - D_GVH*GVH", "GvHD"),
    _s("LI", "1", "drug-induced hepatocellular injury signal", "0", "S_LI_CY*C_CY - K_LI*LI", "liver"),
    _s("ALT", "U/L", "alanine aminotransferase", "ALT0", "K_ALT*(ALT0*(1 + LI + EMAX_ALT*IL6X/(IL6X + EC50_ALT)) - ALT)", "liver"),
    _s("AST", "U/L", "aspartate aminotransferase", "AST0", "K_AST*(AST0*(1 + AST_ALT*(LI + EMAX_ALT*IL6X/(IL6X + EC50_ALT))) - AST)", "liver"),
    _s("A_TCZ", "mg", "tocilizumab in the body", "0", "-K_TCZ*A_TCZ", "supportive drugs"),
    _s("A_GC", "mg", "glucocorticoid action in the body, prednisone-equivalent mg (dexamethasone, methylprednisolone)", "0", "-K_GC*A_GC", "supportive drugs"),
    _s("A_GCSF", "ug", "filgrastim in the body", "0", "-K_GCSF*A_GCSF", "supportive drugs"),
)

DOSES = (
    DoseInput("FLUDARABINE", "A_F1", "mg", "F_ARAA", "fludarabine phosphate IV; F-ara-A enters the central compartment"),
    DoseInput("CYCLOPHOSPHAMIDE", "A_CY", "mg", "1", "cyclophosphamide IV"),
    DoseInput("CART", "CE", "cells", "1/BLOOD_EQ", "CAR-T infusion; whole-body cells to blood cells/uL-equivalent"),
    DoseInput("TOCILIZUMAB", "A_TCZ", "mg", "1", "tocilizumab IV (Le2018: 8 mg/kg, at most 800 mg)"),
    DoseInput("DEXAMETHASONE", "A_GC", "mg", "5/0.75", "dexamethasone IV; prednisone-equivalent (Meikle1977: 0.75 mg = prednisone 5 mg)"),
    DoseInput("METHYLPREDNISOLONE", "A_GC", "mg", "5/4", "methylprednisolone IV pulse; prednisone-equivalent (Meikle1977: 4 mg = prednisone 5 mg)"),
    DoseInput("FILGRASTIM", "A_GCSF", "ug", "1", "filgrastim (G-CSF); subcutaneous absorption (Tmax 2-8 h) taken as immediate"),
)


def _o(test, expression, unit, description):
    return Observable(test, expression, unit, description)


OBSERVABLES = (
    _o("CART", "CE + CM", "cells/uL", "CAR-T cells in blood"),
    _o("BCELL", "B + BA", "cells/uL", "CD19+ B cells in blood"),
    _o("BCMAPC", "PB + PBA + F_CIRC_PCN*(PCN + PCNA) + F_CIRC_LL*LL", "cells/uL", "BCMA+ plasma cells in blood: CD19+ plasmablasts and circulating CD19- plasma cells"),
    _o("CD19NPC", "F_CIRC_PCN*(PCN + PCNA) + F_CIRC_LL*LL", "cells/uL", "CD19- BCMA+ plasma cells in blood"),
    _o("NEUT", "NEUTC", "10^9/L", "absolute neutrophil count"),
    _o("LYM", "(H + NK + B + BA + CE + CM)/1000", "10^9/L", "absolute lymphocyte count"),
    _o("WBC", "NEUTC + (H + NK + B + BA + CE + CM)/1000 + 0.45", "10^9/L", "leukocytes (monocytes and others fixed at 0.45 x 10^9/L, assumed)"),
    _o("PLAT", "PLTC", "10^9/L", "platelets"),
    _o("C3", "C3", "g/L", "complement C3"),
    _o("C4", "C4", "g/L", "complement C4"),
    _o("DSDNA", "DSDNA", "IU/mL", "anti-dsDNA"),
    _o("IGG", "IGG", "g/L", "total IgG"),
    _o("VACCIGG", "100*LL/LL0", "%", "pre-existing vaccine IgG titre, percent of pre-treatment: made by long-lived plasma cells (Amanna 2007; Bhoj 2016), so it follows LL (IgG half-life 3 weeks, far shorter than the pool's)"),
    _o("ALT", "ALT", "U/L", "ALT"),
    _o("AST", "AST", "U/L", "AST"),
    _o("IL6", "IL6", "pg/mL", "IL-6"),
    _o("UPROT", "UPROT_RES + Max(UPROT0 - UPROT_RES, 0)*DR", "g/24h", "proteinuria"),
    _o("TEMP", "36.8 + DTEMP*IL6S/(IL6S + EC_TEMP)", "C", "highest body temperature of the day"),
    _o("HYPOTEN", "above(IL6_0 + IL6S, IL6_HYPOTEN)", "category", "hypotension needing fluids when IL-6 is very high (assumed link)"),
    _o("HYPOXIA", "above(IL6_0 + IL6S, IL6_HYPOXIA)", "category", "hypoxia needing low-flow oxygen when IL-6 is very high (assumed link)"),
    _o("ICE", "10 - 3*above(IL6, IL6_ICANS)", "points", "ICE score (assumed link to extreme IL-6)"),
    _o("PGA", "Min(3, PGA0*D)", "points", "physician global assessment, scaled with systemic inflammation"),
    _o("SD_ARTH", "ARTH0*above(D, THR_ARTH)", "presence", "arthritis"),
    _o("SD_RASH", "RASH0*above(D, THR_RASH)", "presence", "rash"),
    _o("SD_ALOP", "ALOP0*above(D, THR_ALOP)", "presence", "alopecia"),
    _o("SD_VASC", "VASC0*above(D, THR_VASC)", "presence", "vasculitis"),
    _o("SD_MUCUL", "MUC0*above(D, THR_MUC)", "presence", "mucosal ulcers"),
    _o("SD_PLEUR", "PLEUR0*above(D, THR_SEROS)", "presence", "pleurisy"),
    _o("SD_PERIC", "PERIC0*above(D, THR_SEROS)", "presence", "pericarditis"),
    _o("SD_MYOS", "MYOS0*above(D, THR_MYOS)", "presence", "myositis"),
    _o("SD_CASTS", "CASTS0*above(DR, THR_RENAL)", "presence", "urinary casts"),
    _o("SD_HEMAT", "HEMAT0*above(DR, THR_RENAL)", "presence", "haematuria"),
    _o("SD_PYUR", "PYUR0*above(DR, THR_RENAL)", "presence", "pyuria"),
    _o("SD_SEIZ", "0", "presence", "seizure: neuropsychiatric lupus is not modelled; virtual populations carry none (assumed absent)"),
    _o("SD_PSYCH", "0", "presence", "psychosis: neuropsychiatric lupus is not modelled; virtual populations carry none (assumed absent)"),
    _o("SD_OBS", "0", "presence", "organic brain syndrome: neuropsychiatric lupus is not modelled; virtual populations carry none (assumed absent)"),
    _o("SD_VISUAL", "0", "presence", "visual disturbance: neuropsychiatric lupus is not modelled; virtual populations carry none (assumed absent)"),
    _o("SD_CRAN", "0", "presence", "cranial nerve disorder: neuropsychiatric lupus is not modelled; virtual populations carry none (assumed absent)"),
    _o("SD_HEAD", "0", "presence", "lupus headache: neuropsychiatric lupus is not modelled; virtual populations carry none (assumed absent)"),
    _o("SD_CVA", "0", "presence", "cerebrovascular accident: neuropsychiatric lupus is not modelled; virtual populations carry none (assumed absent)"),
    _o("PRED", "PRED_BEFORE*above(-t, 0) + K_GC*A_GC", "mg/day", "glucocorticoid dose, prednisone-equivalent: the enrolment dose before the infusion (trial protocols stop it after), plus the glucocorticoids given by protocol rules (dexamethasone, methylprednisolone) as the daily dose that sustains their action in the body"),
    _o("IMMSUP", "above(-t, 0)", "presence", "immunosuppressant before the infusion, none after (trial protocols stop it)"),
    _o("ANTIMAL", "0", "presence", "antimalarial: not modelled, assumed stopped"),
    _o("GVHD_SKIN", "100*Max(GVH - 1, 0)/(Max(GVH - 1, 0) + 4)", "%BSA", "acute GvHD rash: appears once donor-TCR alloreactivity exceeds 1 (assumed link)"),
    _o("GVHD_UGI", "0", "presence", "upper-GI GvHD: not modelled (assumed absent; skin is the usual first organ)"),
    _o("STOOL", "0", "mL/day", "GvHD diarrhoea: not modelled (assumed absent)"),
    _o("BILAG_MSK", "5 - ARTH0*(1 + 2*above(D, THR_ARTH))", "grade", "BILAG musculoskeletal mapped from arthritis: B while active, D once resolved, E if never involved (assumed mapping)"),
    _o("BILAG_MUC", "5 - (1 - (1 - RASH0)*(1 - ALOP0)*(1 - MUC0)*(1 - VASC0))*(1 + 2*(1 - (1 - RASH0*above(D, THR_RASH))*(1 - ALOP0*above(D, THR_ALOP))*(1 - MUC0*above(D, THR_MUC))*(1 - VASC0*above(D, THR_VASC))))", "grade", "BILAG mucocutaneous mapped from rash, alopecia, ulcers and cutaneous vasculitis: B while any is active, D once all resolved, E if none was involved (assumed mapping)"),
    _o("BILAG_CARD", "5 - (1 - (1 - PLEUR0)*(1 - PERIC0))*(1 + 2*above(D, THR_SEROS))", "grade", "BILAG cardiorespiratory mapped from serositis (assumed mapping)"),
    _o("BILAG_RENAL", "5 - (1 - (1 - CASTS0)*(1 - HEMAT0)*(1 - PYUR0)*(1 - above(UPROT0, 0.5)))*(1 + 2*above(DR, THR_RENAL))", "grade", "BILAG renal mapped from urinary sediment and proteinuria (assumed mapping)"),
    _o("BILAG_GEN", "5", "grade", "BILAG constitutional: not modelled (E)"),
    _o("BILAG_NEURO", "5", "grade", "BILAG neuropsychiatric: not modelled (E)"),
    _o("BILAG_GI", "5", "grade", "BILAG gastrointestinal: not modelled (E)"),
    _o("BILAG_OPHTH", "5", "grade", "BILAG ophthalmic: not modelled (E)"),
    _o("BILAG_HAEM", "5", "grade", "BILAG haematological: not modelled (E)"),
    _o("ANTICYT", "above(A_TCZ + A_GC, 0)", "presence", "tocilizumab or a glucocorticoid given by a protocol rule on or before this day (after it ASTCT CRS no longer requires fever)"),
)

CORRELATIONS = (
    Correlation("RHO", "K_E", 0.3, "assumed: patients with brisk expansion contract faster (Liu 2021 responders had higher proliferation)"),
    Correlation("H0", "NK0", 0.4, "assumed: T and NK lymphopenia co-occur in SLE"),
)

NOTES = (
    "Thin evidence: the host-versus-graft arm (S_R, A_R, D_R, K_STIM, K_T, F_CAR, K_NK) has no "
    "published parameter estimates; it is calibrated only to the qualitative contrast between "
    "HLA-intact UCART19 (expansion and persistence lower without alemtuzumab, lost within about "
    "4 weeks; Dupouy 2022) and HLA-edited TyU19 (persisting beyond 3 months; Wang X 2024). "
    "Benjamin 2020 (Lancet; no UCART19 expansion without alemtuzumab) was not read and is not used.",
    "Thin evidence: SLE-specific CAR-T peak sizes were not retrieved; the peak scale rests on "
    "oncology CK models (Stein 2019, Kimmel 2021) and the day-14 peak of TyU19 (Wang D 2025).",
    "Thin evidence: disease activity is a latent inflammation state; the descriptor thresholds and "
    "PGA scaling are assumptions chosen so that organ items resolve in the order seen clinically.",
    "Known departures from published results (model 0.7.4): (1) B-cell return varies far more "
    "between virtual patients than reported: after Erlangen Flu/Cy the return day has an SD of "
    "about 105 d among the patients whose B cells come back and about 160 d counting the 2% still "
    "aplastic at year 3 at their last count (5th-95th percentile about 40-420 d; a quarter still "
    "aplastic at month 6), against 32 d in Mackensen 2022 (n = 5) and an aplasia SD of 47 d in "
    "Muller 2024 (n = 15) (held-out target mackensen_bcell_return_sd, 20-75 d); the cohort median "
    "is on target. It has two causes. The return day follows the CAR-T peak, which spans tenfold, "
    "through the persisting pool (t1/2 58 d), and no one parameter's variability carries that: "
    "setting any single one to 0 leaves an SD of 87-126 d among those whose B cells come back. "
    "And about one patient in twenty has "
    "persisting CAR-T that keep proliferating on the precursors coming out of the marrow, on the "
    "antigen-alone floor F15_MIN, and hold B cells away for a year or more. Letting exhaustion "
    "take that floor away narrows the SD to about 70 d, none left aplastic at year 3, but the "
    "same floor carries the 2-month "
    "B-cell aplasia of TyU19, and the longer marrow lag (MTT_PRE) that would keep both return "
    "days makes more CRS; not adopted. (2) IL-6, and with it "
    "fever, falls to baseline within about a day once the expansion stops (release tied to net "
    "CAR-T growth, IL-6 t1/2 4.2 h), where CRS in patients wanes over days. (3) Anti-dsDNA settles "
    "at 1 - F_DSDNA_SL = 5% of baseline in every patient, so seroconversion depends on the baseline "
    "titre alone. (4) Platelets fall further after Erlangen Flu/Cy than the Erlangen SLE report "
    "describes (PLT_SENS). (5) A BCMA-only CAR gives CRS in most virtual patients (88% in the "
    "lupus-nephritis scenario), against 1/7 in the Tongji lupus nephritis series (target "
    "bcma_crs_any). The model releases IL-6 with CAR-T expansion, and a BCMA CAR expands on the "
    "plasma-cell pool (about 55 cells/uL-eq, which lymphodepletion does not touch) as a CD19 CAR "
    "does on the B lineage: both are far above K_AG, so expansion and CRS match. The evidence does "
    "not settle that BCMA CAR-T give less CRS in autoimmune disease: at the same hospital a BCMA "
    "CAR (CT103A) after Flu/Cy gave CRS, grade 1-2, in all 12 NMOSD patients (Qin C et al. Signal "
    "Transduct Target Ther 2023;8:5, doi 10.1038/s41392-022-01278-3), and the BCMA-CD19 "
    "compound CAR 'mild CRS' in SLE (WangW2024ard); no parameter was changed to meet the 1/7.",
    "Thin evidence: the marrow and plasma-cell pools are in blood-equivalent units; only blood "
    "B cells, CAR-T, ANC, ALC and platelets map to measured units directly.",
    "Contraction and how B-cell aplasia ends (model 0.6): effector CAR-T proliferate only while "
    "the antigen is above about K_AG (steepness N_AG), so once B cells are gone the CD19+ "
    "precursors still coming out of the marrow (a few cells/uL-eq) cannot hold them up and they "
    "contract at K_E + K_EM (typical patient after Erlangen Flu/Cy: peak 20 cells/uL on day 8, "
    "apparent half-life 6 d over the following week; Stein 2019 4.3 d, Ogasawara 2021 5.0 d) to a "
    "persisting (memory) pool of about a fifth of the peak, which declines at BETA_M (t1/2 58 d). "
    "Effector and persisting CAR-T kill alike, and the kill falls with the square of the CAR-T "
    "level below KC_KILL, so the persisting pool keeps the precursors out until it falls below a "
    "few cells/uL; then B cells return (typical patient: day 107; Mackensen 2022: 110 +/- 32 d) "
    "and CAR-T stay detectable (>= 1 cell/uL) for about 3 months more. Exhaustion (K_X, X50) "
    "accrues while antigen is above about K_AG, during the expansion burst and again as "
    "precursors come back, and stops the CAR-T re-expanding on them; without it CAR-T and "
    "precursors would settle into a lasting equilibrium with no B-cell return. In model 0.5 "
    "antigen from the marrow kept the effectors on a plateau (apparent half-life about 33 d over "
    "the week after the peak) that only exhaustion ended. BETA_M is faster than the oncology "
    "terminal phase (220-352 d), in line with the shorter CAR-T persistence reported in SLE than "
    "in lymphoma (Muller 2025 Blood); no SLE CAR-T curve was retrieved to check the shape.",
    "Without lymphodepletion (model 0.7): homeostatic cytokines stay at baseline (a full "
    "lymphocyte pool consumes them), so CAR-T proliferation rests on a second, cytokine-"
    "independent route: F_AI = F15_MIN + F_AIX x (relative antigen load AG/AG0, first order, "
    "half at K_AI) x (exhaustion gate, X_AI) x (CAR-T density gate, K_QC): strongly stimulated "
    "cells make IL-2 for each other until exhaustion, whose first casualty is IL-2 production, "
    "takes it away within about a week; cells already eliminated (by NK cells, say) cannot "
    "regrow on it. The homeostatic route is F_CY = F15_MIN + (1 - F15_MIN) x (TCR factor) x "
    "(IL-7/IL-15 gate). Both are common-gamma-chain signals to STAT5, so proliferation follows "
    "the stronger of the two (a smooth maximum, P_MX), not their sum. The antigen route depends "
    "on the antigen load only to first order, so lymphodepletion, which takes about half of the "
    "CD19+ compartment with it, lowers it by a fifth to a quarter (a third after the standard "
    "regimen, which leaves 0.3 of it): a second-order loss beside "
    "what lymphodepletion gives (fewer host T and NK cells, more IL-7/IL-15), and more "
    "lymphodepletion never makes a product worse. After the usual regimens the cytokine route is "
    "the stronger in most patients and the post-LD kinetics, CRS and B-cell return are those of "
    "model 0.6; without or after light lymphodepletion the antigen route carries the expansion. "
    "TyU19 without lymphodepletion expands (typical peak 6.9 cells/uL on day 15, against 9.8 on "
    "day 13 after the low-intensity regimen), B cells stay below 1/uL from day 17 to about day "
    "62 and SLEDAI-2K reaches 0 by month 3, as the TyU19 SLE reports say ([V2]: efficacy without "
    "lymphocyte clearance; in vivo CD19 CAR without lymphodepletion also gave B cells < 1/uL). "
    "Along the intensity path none -> reduced -> Erlangen (TyU19 1e6/kg, 200 virtual patients "
    "per level) remission by month 6 and B-cell aplasia of 28 days or more rise with intensity "
    "within Monte-Carlo noise (docs/design.md). Model 0.6 gated the antigen route steeply "
    "(N_AI 8, K_AI 0.9) and added it to the cytokine route: a light regimen removed the drive "
    "before homeostatic cytokines had risen and did worse than none (remission 73-77% at "
    "intensity 0.125-0.25 against 91.5% without lymphodepletion). F_AIX and K_AI are set "
    "against the qualitative no-LD report (target tyu19_no_ld_sledai2k_m6, calibrated); no "
    "CAR-T or B-cell kinetics without lymphodepletion were found to test the shape, and a "
    "patient whose B cells are already low for another reason (recent rituximab, say) is not "
    "distinguished from one after lymphodepletion.",
    "CRS: IL-6 is released in proportion to the net growth of the effector CAR-T pool (ACT), "
    "so it rises during expansion and falls within hours to days once the pool stops growing "
    "(IL-6 t1/2 4.2 h); contracting effectors release none, "
    "so fever does not outlast expansion. What separates a product with no CRS (TyU19: 0/6, "
    "Wang X 2024, Wang D 2025) from one with mild CRS (autologous: any grade in 87% of 47 "
    "pooled SLE patients) is not established by direct evidence; the model's candidate is the "
    "TCR: TyU19's TRAC knockout removes the TCR contact with self-MHC that lymphopenia-induced "
    "T-cell proliferation needs besides IL-7/IL-15 (Goldrath & Bevan 1999; Tan 2001), and "
    "TCR-knockout CD19 CAR-T persisted less in vivo (Stenger 2020). Cells without a TCR keep "
    "H15_TCRKO of the homeostatic drive, so TyU19 expands more slowly (peak day 13-14 as "
    "reported, against day 8-10 for autologous products), releases less IL-6 and gives CRS in "
    "about two fifths of virtual patients after the low-intensity regimen (0/6 is compatible "
    "with up to 46%). H15_TCRKO (0.66 in model 0.7) is set by TyU19's peak day and by that "
    "bound; YTS109 (TRAC knocked out as well) "
    "gave mild CRS (Nat Med 2025), which the model also allows. No evidence was found that an "
    "HLA or PD-1 edit changes cytokine release.",
    "BCMA+ and CD19-BCMA+ plasma cells in blood fall after CD19 CAR-T because most circulating "
    "CD19- plasma cells are recently formed from CD19+ plasmablasts on their way to the marrow "
    "(Mei 2012): killing the plasmablasts stops their supply and they decay with their own "
    "lifespan (K_DPCN, t1/2 20 d; pools PCN and PCNA, from non-autoreactive and autoreactive "
    "plasmablasts), while long-lived marrow plasma cells (CD19-) persist.",
    "Target antigens: a product declares what its CAR recognises (TGT_CD19, TGT_BCMA). A CD19 "
    "CAR sees and kills B precursors, B cells and plasmablasts (BTOT); a BCMA CAR sees and kills "
    "plasmablasts and the CD19- plasma cells that a CD19 CAR cannot reach, the long-lived marrow "
    "ones included (BCMATOT, THETA_PC), which carry vaccine titres and part of the anti-dsDNA; a "
    "compound BCMA-CD19 CAR does both. BCMA is also on the autoreactive activated/memory B "
    "cells (BA) that feed the plasmablasts (more on memory than on naive B cells, raised in SLE; "
    "IJMS2024bcma), so a BCMA-only CAR kills them at THETA_BA (0.5, assumed) of its plasma-cell "
    "kill, and they count towards its antigen (model 0.7.4). Without it (model 0.7.3) a BCMA-only "
    "CAR removed plasma cells and, for a few weeks, anti-dsDNA, but left the autoreactive pool "
    "and its T-cell help: the plasmablasts and anti-dsDNA came back as the CAR-T contracted and "
    "SLEDAI-2K never fell (lupus-nephritis scenario: median 24 at day 270, as at baseline). With "
    "it the pool is gone within about two weeks and its help fades as after a CD19 CAR (SLEDAI-2K "
    "0 by month 3 in the typical patient); any THETA_BA from 0.25 to 1 gives the same month-9 "
    "outcome. Naive and non-autoreactive memory B cells (B) are not separated and carry no BCMA "
    "in the model, so after a BCMA-only CAR total B cells fall only by lymphodepletion and the "
    "loss of the autoreactive share, where the Tongji lupus-nephritis series reports B cells gone "
    "within a month and back within 3 and a myeloma series B-cell aplasia in all 40 patients "
    "(BloodAdv2021bcma); what kills naive B cells after a BCMA CAR is not known, so no kill of "
    "them is assumed (target bcma_bcell_return_3m stays not evaluable).",
    "PD-1 knockout (PD1_GAIN) is neutral by default: it would raise resistance to exhaustion, "
    "but no human kinetic effect has been shown. GvHD is not simulated: all products in the "
    "catalogue have TRAC knocked out (TCR_ALLO = 0).",
    "Host-versus-graft (R): host T cells left after lymphodepletion are primed against foreign "
    "antigen on the product within days of the infusion, at a rate S_R x FOREIGN x H/H0, where "
    "FOREIGN = ALLO x F_HLA + F_CAR (mismatched HLA plus the CAR transgene), and the primed "
    "response expands at A_R x FOREIGN while the product is there, contracting at D_R. Against "
    "a full HLA mismatch the loop gain A_R x FOREIGN / D_R is 2.2: the response outgrows the "
    "CAR-T within 1-2 weeks, sooner the more host T cells survive lymphodepletion (Dupouy "
    "2022: host T-cell AUC(0-28) drove UCART19 kinetics). For TyU19 (F_HLA 0.1) it is 0.26 and "
    "for autologous cells 0.04: no self-sustaining response; a small standing response, "
    "proportional to the host T cells, shortens persistence a little as they recover. Without "
    "lymphodepletion the whole host T-cell pool primes the response, so HLA-intact cells are "
    "rejected before they expand (typical patient: peak 1.2 cells/uL on day 5, undetectable "
    "from day 6; with the primed kill switched off they would reach 7.0 cells/uL, as TyU19 does): "
    "rejection, not the antigen, is what stops them in a lymphoreplete host (model 0.7).",
    "Homeostatic cytokines (IL15, fold baseline): production is constant and lymphocytes "
    "(host T, NK, CAR-T) consume it (the cytokine sink of Gattinoni 2005), so the level is "
    "FOLD15/(1 + (FOLD15 - 1) x L/L0) at quasi-steady state: about 3.2-fold after the reduced "
    "regimen, 3.7 after Erlangen, 4.3 after standard Flu/Cy and 5 with an empty pool (De Bock "
    "2013: 5.2-fold on day 7). The gate F_15 is steep over that range (EC15 4), so CAR-T "
    "expansion, and with it the persisting pool that keeps B cells away, follow the depth and "
    "length of lymphodepletion; the Erlangen and reduced regimens differ only in cyclophosphamide "
    "(1000 vs 750 mg/m^2), so their contrast is moderate (typical peak 20 vs 15 cells/uL).",
    "Fludarabine exposure (FAUC, cumulative F-ara-A AUC in mg.h/L, renal function included "
    "through CL_F_R x CrCl): fludarabine deepens host T- and NK-cell depletion and slows host "
    "T-cell recovery (rate R_H/(1 + (FAUC/FAUC_H)^2), threshold-like; Wijermans 1993). Below "
    "the published cut-point of 13.8-14 mg.h/L (Fabrizio 2022, Dekker 2022) host T cells return "
    "sooner, homeostatic cytokines fall earlier, the CAR-T expand less and their persisting pool "
    "is smaller: in the typical patient after Erlangen Flu/Cy (no renal dose cut) the peak is 14, "
    "20 and 27 cells/uL and B cells return on day 96, 106 and 131 at 7, 13 and 21 mg.h/L. The "
    "published effect (HR about 2 for loss of B-cell aplasia in B-ALL) is of the size of the "
    "model's ratio of median aplasia durations, whose aplasia in SLE is bounded by the Erlangen "
    "return at 110 +/- 32 d; the typical SLE patient after 25 mg/m^2 x 3 (about 12.8 mg.h/L) sits "
    "just below the cut-point.",
    "Dose and exposure: CAR-T expansion is limited by antigen (CD19+ B cells and marrow "
    "precursors, K_AG) and by homeostatic cytokines, not by the number of cells infused, so "
    "the peak rises far less than in proportion to dose (typical patient after Erlangen Flu/Cy: "
    "about 16, 20 and 25 cells/uL at 1e5, 1e6 and 1e7 cells/kg, a log-log slope near 0.1) and "
    "the peak comes earlier with a higher dose. This matches the oncology popCK analyses, in "
    "which dose did not explain exposure within 10-25-fold ranges (Stein 2019, Awasthi 2020, "
    "Ogasawara 2021); no published slope below 1 was found to fit.",
    "Disease at baseline: the autoreactive B pool (BA) is a stable steady state in every "
    "sampled patient by construction. Its net regrowth G_A is positive (log-normal), its "
    "self-renewal is derived from it (R_AH = K_DB + K_DIFFA + G_A x help) and its crowding term "
    "from the steady-state condition, and the help loop (AH) has a gain below 1. Model 0.3 "
    "derived a carrying capacity that was negative in about 20% of patients, whose disease "
    "ended at any disturbance; a cyclophosphamide-containing lymphodepletion alone now leaves "
    "the disease back at baseline within 3 years.",
    "Immune reset and relapse: the autoreactive pool regrows at G_A only with T-cell help (AH: "
    "ICOS+ Tfh/germinal-centre support), which needs autoreactive B cells and fades (K_AH, "
    "t1/2 17 d) once they fall below about A50_AH (10%) of baseline (Iwata 2011; Baumjohann "
    "2013). Shallow or short depletion leaves help and residual cells, and the pool regrows "
    "within a year or two after B cells return (rituximab: Lazarus 2012, Gomez Mendez 2018). "
    "Deep, long depletion removes both; returning naive B cells restart autoreactivity at "
    "F_NAIVE (20%) of the full rate, so relapse by year 3 is uncommon (Erlangen: drug-free "
    "remission over a median 15 months, up to 29; Muller 2024). Relapse by year 3 among "
    "month-6 remitters: about 13% after autologous CAR-T with Erlangen Flu/Cy, 35-45% without "
    "lymphodepletion. The model is deterministic: the disease returns in everyone eventually, "
    "late after deep depletion; G_A, F_NAIVE, K_AH and A50_AH are assumed, with no SLE "
    "relapse-time data to fit them.",
    "Humoral: total IgG has three sources: plasma cells that B cells replenish (F_IGG_SL, typically "
    "23%, varying between patients), "
    "the disease-driven polyclonal excess of autoreactive plasma cells (F_IGG_AUTO 10%, lost in "
    "remission) and long-lived marrow plasma cells (the rest, about two thirds; t1/2 11 y, Amanna "
    "2007). After CD19 CAR-T total IgG falls by about a third (virtual patients after Erlangen "
    "Flu/Cy: month-6 median 0.67 of baseline, 5th-95th percentile 0.57-0.76; model 0.7.0 put every "
    "patient at 0.60) and recovers once B cells return (about 85% by month 18, the disease-driven "
    "excess staying away), while long-lived plasma cells, which carry vaccine titres, are kept "
    "(Bhoj 2016). No SLE-specific IgG course was found; the haematology fall (Barmettler 2024: "
    "-38%) is an upper bound. Model 0.7.3: the cap on F_SL subtracts F_IGG_AUTO, so long-lived "
    "plasma cells keep their minimum share of IgG for any F_IGG_AUTO (a fixed cap of 0.8 kept a "
    "tenth only while F_IGG_AUTO <= 0.1); at the declared values nothing changes.",
    "Liver: lymphodepletion injury is driven by cyclophosphamide exposure with a wide "
    "between-patient spread (S_LI_CY, omega 1.5), on top of the IL-6-driven rise of CRS. "
    "Grade >= 3 ALT (> 5 x ULN) occurs in about 5-10% after Flu/Cy and ALT above ULN in about "
    "60%; no published grade 3/4 transaminase rate after Flu/Cy was found, only its listing "
    "among the commonest grade 3/4 events of TyU19 in SLE (Cell Research 2025, n = 4). The "
    "clinical layer grades it against the value before lymphodepletion (CTCAE baseline).",
    "Supportive and rescue drugs (given only when a protocol rule fires; none by default): "
    "tocilizumab blocks IL-6 receptor signalling (INH_TCZ), so fever, hypotension and hypoxia "
    "fall while serum IL-6 rises, its receptor-mediated clearance blocked (Nishimoto 2008); "
    "the ICE score follows serum IL-6 because tocilizumab does not reach the brain. "
    "Glucocorticoids (dexamethasone for CRS, a methylprednisolone pulse for a lupus flare) act "
    "through one state in prednisone-equivalent mg: they lower CAR-T-driven IL-6 release, "
    "blunt CAR-T proliferation a little (IMAX_GCCAR 0.2: early steroids left expansion "
    "comparable in ZUMA-1 cohorts 4 and 6, Topp 2021, Oluwole 2021) and suppress organ "
    "inflammation while they act; the flare returns once they wear off unless its drive has "
    "gone. Their daily-dose equivalent is part of the PRED read-out, so a rescued patient is "
    "not in steroid-free remission. Filgrastim (G-CSF) speeds neutrophil precursor "
    "proliferation and maturation (Price 1996); the effect sizes are assumed.",
)

MODEL = Model(
    name="lupus_cart",
    version="0.7.4",
    description="CD19 CAR-T in SLE: lymphodepletion PK, myelosuppression, host T/NK recovery, "
    "CAR-T kinetics with host-versus-graft rejection, B lineage and plasma cells, anti-dsDNA, "
    "complement, disease activity, IL-6 and liver enzymes.",
    parameters=PARAMETERS,
    covariates=COVARIATES,
    assignments=ASSIGNMENTS,
    states=STATES,
    doses=DOSES,
    observables=OBSERVABLES,
    correlations=CORRELATIONS,
    notes=NOTES,
)
