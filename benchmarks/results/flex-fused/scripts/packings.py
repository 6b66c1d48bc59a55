# Ran against commit 043270b (attnkit.functional._segments): segments vs the tiled loop (MIN_MEAN_LENGTH raised to
# turn segments off) for random packings; B=1 H=8 D=64 fp32, 2 threads, medians of 10. Source of the numbers in
# _segments.py. Usage: python packings.py
import os, sys, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fused.med
from fused import med
from attnkit import masks
from attnkit.functional import attention
from attnkit.functional import _segments
torch.set_num_threads(2)
g=torch.Generator().manual_seed(0)
def rand_ids(L, lo, hi):
    lens=[]
    while sum(lens)<L: lens.append(int(torch.randint(lo,hi+1,(1,),generator=g)))
    lens[-1]-= sum(lens)-L
    lens=[x for x in lens if x>0]
    return torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens)), len(lens)
for L,lo,hi in [(1024,16,128),(1024,64,256),(4096,64,512),(4096,16,128),(16384,256,2048),(1024,4,16),(1024,8,32),(1024,16,48),(4096,8,32),(512,32,32),(2048,16,16),(1024,2,6),(1024,1,3),(4096,2,6)]:
    ids,n=rand_ids(L,lo,hi)
    q,k,v=(torch.randn(1,8,L,64) for _ in range(3))
    m=masks.document(ids)
    _segments.MIN_MEAN_LENGTH=1; a=med(lambda: attention(q,k,v,m),10)
    old=_segments.MIN_MEAN_LENGTH; _segments.MIN_MEAN_LENGTH=10**9
    b=med(lambda: attention(q,k,v,m),10)
    _segments.MIN_MEAN_LENGTH=old
    print(L,lo,hi,n,'docs: segments',round(a,2),'tiled',round(b,2),flush=True)
