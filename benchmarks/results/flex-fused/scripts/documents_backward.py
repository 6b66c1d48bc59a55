# Ran against commit 043270b~ (tiled backward for documents): the fused backward op on 8 equal documents vs the
# tiled backward pass; B=1 H=8 D=64 fp32, 2 threads, medians of 10. Usage: python documents_backward.py 1024 4096 8192
import os, sys, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fused.med
from fused import med, FA
from attnkit import masks
from attnkit.functional import attention
FB = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default
torch.set_num_threads(2)
for L in [int(a) for a in sys.argv[1:]]:
    n=8; Ld=L//n
    q,k,v=(torch.randn(1,8,L,64) for _ in range(3)); do=torch.randn(1,8,L,64)
    st=lambda t: t.reshape(-1,1,Ld,64)
    o,l=FA(st(q),st(k),st(v))
    fb=lambda: FB(st(do),st(q),st(k),st(v),o,l,0.0,False)
    qq,kk,vv=(t.clone().requires_grad_() for t in (q,k,v))
    m=masks.document(torch.arange(L)//Ld)
    out=attention(qq,kk,vv,m)
    def tb():
        torch.autograd.grad(out,(qq,kk,vv),do,retain_graph=True)
    g1=fb(); g2=torch.autograd.grad(out,(qq,kk,vv),do,retain_graph=True)
    print('err',max((a.reshape(b.shape)-b).abs().max().item() for a,b in zip(g1,g2)))
    print(L,'FA bwd',round(med(fb,10),2),'tiled bwd',round(med(tb,10),2),flush=True)
