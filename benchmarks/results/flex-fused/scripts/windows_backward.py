# Prototype: one padded call of the fused forward and backward ops over all windows of a sliding window 256
# (tq = 32, 64) vs attention() forward+backward of commit e59c574 (tiled). The fused backward was slower; not kept.
# Usage: python windows_backward.py 1024 4096 16384
import os, sys, time, torch
from attnkit import masks
from attnkit.functional import attention
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fused.med
from fused import med, FA
FB = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default
torch.set_num_threads(2)
def pad_band(q,k,v,W,tq,do=None):
    # one FA call: K padded at front with W-1 zeros... positions: window of block i = [i*tq - W + 1, i*tq + tq)
    BH,L,D=q.shape
    w=W+tq-1
    kp=torch.zeros(BH,L+W-1,D); kp[:,W-1:]=k
    vp=torch.zeros(BH,L+W-1,D); vp[:,W-1:]=v
    m=L//tq
    i=torch.arange(tq)[:,None]; j=torch.arange(w)[None,:]
    pos=j-(W-1)
    al=(pos<=i)&(pos>i-W)
    pen=torch.zeros(m,1,tq,w).masked_fill_(~al,float('-inf'))
    # first blocks: keys before 0 must be masked: pos + block start < 0
    for b in range(m):
        start=b*tq-W+1
        if start<0: pen[b,0,:, :(-start)]=float('-inf')
    pen=pen.transpose(0,1)  # (1,m,tq,w)
    qb=q.unflatten(1,(m,tq))
    kw=kp.unfold(1,w,tq).transpose(-1,-2); vw=vp.unfold(1,w,tq).transpose(-1,-2)
    o,l=FA(qb,kw,vw,attn_mask=pen)
    if do is None: return o,l
    dq,dk,dv=FB(do.unflatten(1,(m,tq)),qb,kw,vw,o,l,0.0,False,attn_mask=pen)
    return o,l,dq,dk,dv
if __name__ == "__main__":
  for L in [int(a) for a in sys.argv[1:]]:
      q,k,v=(torch.randn(8,L,64) for _ in range(3))
      do=torch.randn(8,L,64)
      for tq in (32,64):
          o,l=pad_band(q,k,v,256,tq)
          ref=attention(q[None],k[None],v[None],masks.sliding_window(256))[0]
          print('err',(o.flatten(1,2)-ref).abs().max().item())
          tf=med(lambda: pad_band(q,k,v,256,tq),10)
          tb=med(lambda: pad_band(q,k,v,256,tq,do),10)
          print(L,tq,'fwd',round(tf,2),'fwd+bwd(no add)',round(tb,2),flush=True)
      qq,kk,vv=(t[None].clone().requires_grad_() for t in (q,k,v))
      def fb():
          out=attention(qq,kk,vv,masks.sliding_window(256)); out.backward(do[None])
      print(L,'tiled fwd+bwd',round(med(fb,10),2),flush=True)
