import ctypes, time, torch, statistics as st
torch.set_num_threads(1)
lib = ctypes.CDLL("bf16_few_row.so"); f = lib.dspark_few_row_linear_bf16
f.argtypes=[ctypes.c_void_p]*3+[ctypes.c_long]*3; f.restype=ctypes.c_int
def kern(x, w):
    xf = x.reshape(-1, x.shape[-1]).float().contiguous()
    out = torch.empty(xf.shape[0], w.shape[0])
    f(w.data_ptr(), xf.data_ptr(), out.data_ptr(), w.shape[0], w.shape[1], xf.shape[0])
    return out.to(torch.bfloat16)
shapes = [(576,576),(192,576),(192,576),(576,576),(1536,576),(1536,576),(576,1536)]*2 + [(576,2880),(8192,576)]
ws = [torch.randn(o,i).to(torch.bfloat16) for o,i in shapes]
for m in (1,4,8,16):
    x = [torch.randn(m, w.shape[1]).to(torch.bfloat16) for w in ws]
    err = max(((kern(a,w).float()-torch.nn.functional.linear(a,w).float()).abs().max()/torch.nn.functional.linear(a,w).float().abs().max()).item() for a,w in zip(x,ws))
    ta, tb = [], []
    for rep in range(30):
        t=time.perf_counter(); [torch.nn.functional.linear(a,w) for a,w in zip(x,ws)]; ta.append(time.perf_counter()-t)
        t=time.perf_counter(); [kern(a,w) for a,w in zip(x,ws)]; tb.append(time.perf_counter()-t)
    print(m, "F.linear bf16 ms", round(1000*st.median(ta),2), "kernel ms", round(1000*st.median(tb),2), "rel err", err)
# float32 torch for comparison
for m in (8,):
    wf=[w.float() for w in ws]; x=[torch.randn(m, w.shape[1]) for w in ws]
    ta=[]
    for rep in range(30):
        t=time.perf_counter(); [torch.nn.functional.linear(a,w) for a,w in zip(x,wf)]; ta.append(time.perf_counter()-t)
    print(m, "F.linear f32 ms", round(1000*st.median(ta),2))
