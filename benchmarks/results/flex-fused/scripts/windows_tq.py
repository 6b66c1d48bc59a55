# Ran against commit e732da1 (attnkit.functional._windows): compiled Flex, fused windows with tq = 16/32/64 and the
# tiled loop block by block (plan_windows patched out), sliding window 256, B=1 H=8 D=64 fp32, 2 threads, best of two
# medians of 40. Source of the table in _windows.py. Usage: python windows_tq.py
import os, sys, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fused.med
from fused import med
from attnkit import masks
from attnkit.functional import attention
from attnkit.functional import tiled as T
import attnkit.functional._windows as W
torch.set_num_threads(2)
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
cflex=torch.compile(flex_attention)
for L in [512,1024,1536]:
    q,k,v=(torch.randn(1,8,L,64) for _ in range(3))
    m=masks.sliding_window(256)
    bm=create_block_mask(lambda b,h,qi,ki:(qi>=ki)&(qi-ki<256),None,None,L,L,device='cpu')
    cflex(q,k,v,block_mask=bm)
    r={}
    for rep in range(2):
        r.setdefault('flex',[]).append(med(lambda: cflex(q,k,v,block_mask=bm),40))
        for tq in (16,32,64):
            W.TQ=tq
            r.setdefault(f'win{tq}',[]).append(med(lambda: attention(q,k,v,m),40))
        ow=T.plan_windows; T.plan_windows=lambda *a,**kw: None
        r.setdefault('tiled',[]).append(med(lambda: attention(q,k,v,m),40))
        T.plan_windows=ow
    print(L,' '.join(f'{a}={min(b):.2f}' for a,b in r.items()),flush=True)
