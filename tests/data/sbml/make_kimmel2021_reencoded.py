import libsbml
doc = libsbml.SBMLDocument(3, 1)
m = doc.createModel(); m.setId("BIOMD0000001041_reencoded")
m.setName("Kimmel2021 - T cell competition and stochastic extinction events in CAR T cell therapy (re-encoded)")
m.setNotes('<body xmlns="http://www.w3.org/1999/xhtml"><p>Re-encoded for cartwin tests from the equations and values of BioModels BIOMD0000001041 (Kimmel GJ, Locke FL, Altrock PM, Proc R Soc B 2021;288:20210229) as given in BioModels SBFC MATLAB export of that entry (CC0). Not the original BioModels file, which was not retrievable offline.</p></body>')
c = m.createCompartment(); c.setId("compartment"); c.setSize(1.0); c.setConstant(True); c.setSpatialDimensions(3)
for sid, v in [("Normal_T_cells", 6.0), ("CAR_T_cells", 0.36), ("Antigen_presenting_tumour_cells", 94.86), ("Total_lymphocyte_count", 6.36)]:
    s = m.createSpecies(); s.setId(sid); s.setCompartment("compartment"); s.setInitialConcentration(v)
    s.setHasOnlySubstanceUnits(False); s.setBoundaryCondition(False); s.setConstant(False)
for pid, v in [("K_N", 500.0), ("K_C", 139.0), ("r_N", 0.17), ("rho_C", 0.0251), ("a", 0.423), ("b", 0.525), ("r_B", 0.01), ("gamma_B", 1.15), ("k_B", 4.05)]:
    p = m.createParameter(); p.setId(pid); p.setValue(v); p.setConstant(True)
p = m.createParameter(); p.setId("r_C"); p.setConstant(False)
settings = libsbml.L3ParserSettings(); settings.setParseLog(libsbml.L3P_PARSE_LOG_AS_LN)
def f(text):
    ast = libsbml.parseL3FormulaWithSettings(text, settings); assert ast is not None, text; return ast
r = m.createAssignmentRule(); r.setVariable("Total_lymphocyte_count"); r.setMath(f("Normal_T_cells + CAR_T_cells"))
r = m.createAssignmentRule(); r.setVariable("r_C"); r.setMath(f("rho_C + b*(Total_lymphocyte_count - K_N)^2/(a*Total_lymphocyte_count^2 + (Total_lymphocyte_count - K_N)^2)"))
for fid, args, body in [("Rate_Law_for_Normal_T_cell_population_growth", "r_N, N, C, K_N", "-r_N*N*ln((N + C)/K_N)"),
                        ("Rate_Law_for_CAR_T_cell_population_growth", "r_C, C, N, K_C", "-r_C*C*ln((N + C)/K_C)"),
                        ("Rate_Law_for_Tumour_growth", "r_B, B", "r_B*B"),
                        ("Rate_Law_for_Tumour_killing", "gamma_B, B, C, k_B", "gamma_B*B*C/(k_B + C)")]:
    fd = m.createFunctionDefinition(); fd.setId(fid); fd.setMath(f(f"lambda({args}, {body})"))
MODIFIERS = {"Normal_T_cell_population_growth": ["CAR_T_cells"], "CAR_T_cell_population_growth": ["Normal_T_cells"], "Tumour_killing": ["CAR_T_cells"]}
for rid, reactants, products, law in [
    ("Normal_T_cell_population_growth", [], ["Normal_T_cells"], "compartment*Rate_Law_for_Normal_T_cell_population_growth(r_N, Normal_T_cells, CAR_T_cells, K_N)"),
    ("CAR_T_cell_population_growth", [], ["CAR_T_cells"], "compartment*Rate_Law_for_CAR_T_cell_population_growth(r_C, CAR_T_cells, Normal_T_cells, K_C)"),
    ("Tumour_growth", [], ["Antigen_presenting_tumour_cells"], "compartment*Rate_Law_for_Tumour_growth(r_B, Antigen_presenting_tumour_cells)"),
    ("Tumour_killing", ["Antigen_presenting_tumour_cells"], [], "compartment*Rate_Law_for_Tumour_killing(gamma_B, Antigen_presenting_tumour_cells, CAR_T_cells, k_B)")]:
    re = m.createReaction(); re.setId(rid); re.setReversible(False); re.setFast(False)
    for x in reactants:
        sr = re.createReactant(); sr.setSpecies(x); sr.setStoichiometry(1.0); sr.setConstant(True)
    for x in products:
        sr = re.createProduct(); sr.setSpecies(x); sr.setStoichiometry(1.0); sr.setConstant(True)
    for x in MODIFIERS.get(rid, []):
        mr = re.createModifier(); mr.setSpecies(x)
    kl = re.createKineticLaw(); kl.setMath(f(law))
text = libsbml.writeSBMLToString(doc)
d2 = libsbml.readSBMLFromString(text); d2.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, False); d2.checkConsistency()
print([d2.getError(i).getMessage() for i in range(d2.getNumErrors()) if d2.getError(i).getSeverity() >= 2])
open("tests/data/sbml/kimmel2021_BIOMD0000001041_reencoded.xml", "w").write(text)
