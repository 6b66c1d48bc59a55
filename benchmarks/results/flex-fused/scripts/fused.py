# Prototype, before the code landed (commit e59c574 + torch ops): sliding window 256 as per-block edge calls plus one
# band call of aten._scaled_dot_product_flash_attention_for_cpu with a (tq, w) mask, vs attention() of that commit.
# Usage: python fused.py (prints L, tq, max error vs tiled, median ms).
import time, torch, sys
from attnkit import masks
from attnkit.functional import attention
from attnkit.functional.tiled import tiled_attention
torch.manual_seed(0)
torch.set_num_threads(2)
FA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default

def med(f, n=30):
    for _ in range(3): f()
    ts=[]
    for _ in range(n):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    ts.sort(); return ts[len(ts)//2]*1e3

def band_fused(q,k,v,W,tq):
    B,H,L,D=q.shape
    # first block(s) whose window start < 0 handled separately; window width w = tq + W - 1 rounded? use keys [q0-W+1, q1)
    w = tq + W - tq if False else W + tq - 1  # keys q0-W+1 .. q1-1
    out = torch.empty_like(q); lse = torch.empty(B,H,L)
    i = torch.arange(tq)[:,None]; j = torch.arange(w)[None,:]
    # key j of block window corresponds to position q0 - W + 1 + j ; query q0+i ; allowed if q0+i-W < pos <= q0+i  => i < j+? 
    pos = j - (W - 1)  # relative to q0
    allowed = (pos <= i) & (pos > i - W)
    pen = torch.zeros(tq,w).masked_fill_(~allowed, float('-inf'))
    first = -(-(W-1)//tq)  # blocks whose window starts before 0
    qf = q.flatten(0,1); kf = k.flatten(0,1); vf=v.flatten(0,1)
    # edge blocks: plain per-block with dense mask
    for b in range(min(first, L//tq)):
        q0,q1=b*tq,(b+1)*tq
        ii=torch.arange(q0,q1)[:,None]; jj=torch.arange(0,q1)[None,:]
        al=(jj<=ii)&(jj>ii-W); p=torch.zeros(tq,q1).masked_fill_(~al,float('-inf'))
        o,l = FA(qf[:,None,q0:q1],kf[:,None,:q1],vf[:,None,:q1],attn_mask=p)
        out.view(B*H,L,D)[:,q0:q1]=o[:,0]; lse.view(B*H,L)[:,q0:q1]=l[:,0]
    m = L//tq - first
    if m>0:
        q0=first*tq; k0=q0-W+1
        qb=qf[:,q0:].unflatten(1,(m,tq))  # (BH,m,tq,D)
        kw=kf[:,k0:].unfold(1,w,tq).transpose(-1,-2)  # (BH,m,w,D)
        vw=vf[:,k0:].unfold(1,w,tq).transpose(-1,-2)
        o,l=FA(qb,kw,vw,attn_mask=pen)
        out.view(B*H,L,D)[:,q0:]=o.flatten(1,2); lse.view(B*H,L)[:,q0:]=l.flatten(1,2)
    return out,lse

if __name__=='__main__':
    for L in [512,1024,2048,4096,8192]:
        q,k,v=(torch.randn(1,8,L,64) for _ in range(3))
        mk=masks.sliding_window(256)
        ref,_=tiled_attention(q,k,v,mk)
        for tq in (64,128):
            o,l=band_fused(q,k,v,256,tq)
            err=(o-ref).abs().max().item()
            t=med(lambda: band_fused(q,k,v,256,tq))
            print(L,tq,'fused err',err,'ms',round(t,2))
        print(L,'tiled ms',round(med(lambda: attention(q,k,v,mk)),2))
