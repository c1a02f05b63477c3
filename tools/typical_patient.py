import numpy as np, sys
from cartwin.model import DEFAULT_MODEL as m
from cartwin.model.codegen import compile_model
from cartwin.simulate.solvers import ScipyLSODA
from cartwin.simulate.events import Dose, doses_to_schedule
from cartwin.therapy.products import PRODUCTS
from cartwin.therapy.regimens import PRESETS, DRUGS
import time
mod = compile_model(m)
def typical(product, regimen, wt=60, crcl=110, overrides={}):
    theta = np.array([p.value for p in m.parameters])
    names = list(m.parameter_names)
    for k,v in {**PRODUCTS[product].mechanism_parameters(), **overrides}.items(): theta[names.index(k)] = v
    cov = dict(WT=wt, CRCL=crcl, DSDNA0=150, C3_0=0.7, C4_0=0.08, UPROT0=1.0, PGA0=2.0, ARTH0=1, RASH0=1, ALOP0=1, VASC0=1, MUC0=0, PLEUR0=0, PERIC0=0, MYOS0=0, CASTS0=0, HEMAT0=1, PYUR0=0)
    covv = np.array([cov[c] for c in m.covariate_names])
    K = mod.constants(theta[None], covv[None]); Y0 = mod.initial(K); S = mod.dose_scales(K)[0]
    bsa = np.sqrt(165*wt/3600)
    doses = [Dose(DRUGS[a.drug][0], a.day, a.dose_mg_m2*bsa, a.duration_hours/24) for a in PRESETS[regimen].administrations]
    doses.append(Dose("CART", 0.0, 1e6*wt))
    sch = doses_to_schedule(doses, m, S)
    t = np.arange(-6, 731, 1.0)
    t0=time.time(); r = ScipyLSODA().solve(mod, K, Y0, [sch], t); el=time.time()-t0
    O = mod.observe(r.states, K, t)[0]
    tests = mod.OBSERVABLE_TESTS
    o = {k: O[:, i] for i,k in enumerate(tests)}
    Y = r.states[0]
    cart = o['CART']; ip = np.argmax(cart)
    b = o['BCELL']
    post = t>=0
    b_under = t[(b<1)&post]; 
    first_under = b_under[0] if b_under.size else None
    back = t[(t>20)&(b>=5)]
    print(f"{product:16s} {regimen:9s} ok={r.ok[0]} {el*1000:.0f}ms CARpk={cart[ip]:.1f}@d{t[ip]:.0f} d28={cart[t==28][0]:.2f} d90={cart[t==90][0]:.3f} d180={cart[t==180][0]:.4f} Bmin={b.min():.2g} B<1 from {first_under} B>=10 at {back[0] if back.size else None} "
          f"ANCnad={o['NEUT'].min():.2f}@{t[np.argmin(o['NEUT'])]:.0f} LYMnad={o['LYM'].min():.2f} dsDNA90={o['DSDNA'][t==90][0]:.0f} C3_90={o['C3'][t==90][0]:.2f} C4_90={o['C4'][t==90][0]:.3f} IL6pk={o['IL6'].max():.0f} T={o['TEMP'].max():.1f} ALTpk={o['ALT'].max():.0f} D90={Y[t==90,m.state_names.index('D')][0]:.2f} PGA90={o['PGA'][t==90][0]:.2f} IgGmin={o['IGG'].min():.1f} minstate={Y.min():.2g} CD19NPC {o['CD19NPC'][t==0][0]:.2f}->{o['CD19NPC'][t==90][0]:.2f} PLTnad={o['PLAT'].min():.0f}")
for prod, reg in [("autologous_cd19","erlangen"),("autologous_cd19","standard"),("autologous_cd19","reduced"),("autologous_cd19","none"),("tyu19","standard"),("tyu19","reduced"),("tyu19","none"),("allo_hla_intact","standard")]:
    typical(prod, reg)
typical("autologous_cd19","erlangen", crcl=40)
