"""The adaptive policy of sim_eval.py per set (run from the repository root)."""
import sys
sys.argv = ['x', 'docs/measurements/2026-12-05e/sim_mt-bench_gsm8k.pt', 'docs/measurements/2026-12-05e/sim_humaneval.pt']
exec(open('docs/measurements/2026-12-05e/sim_eval.py').read().split("pols = {")[0])
exec("def adaptive" + open('docs/measurements/2026-12-05e/sim_eval.py').read().split("def adaptive")[1].split("for kw in")[0])
base,_=run(plain_pol)
ALL=list(recs)
for ds in ['mt-bench','gsm8k','humaneval']:
    keep=[r for r in ALL if r['set']==ds]
    globals()['recs']=keep
    per, st = run(adaptive())
    b,_=run(plain_pol)
    print(ds, round((per[ds][0]/per[ds][1])/(b[ds][0]/b[ds][1]),3), {k:(st[k], round(st[k+'_tok']/st[k],3)) for k in st if not k.endswith('_tok')})
