# Splits capture.sh's packet captures ($S/lan.pcap, $S/lo.pcap) into the datagrams and TCP
# streams clients sent: extract.py OUT (S is OUT's parent directory).
import struct, os, collections, sys
S=os.path.dirname(os.path.abspath(sys.argv[1]))
def packets(path):
    d=open(path,'rb').read()
    magic=struct.unpack('<I',d[:4])[0]
    assert magic in (0xa1b2c3d4,0xa1b23c4d), hex(magic)
    linktype=struct.unpack('<I',d[20:24])[0]
    off=24
    while off+16<=len(d):
        ts,tu,incl,orig=struct.unpack('<IIII',d[off:off+16]); off+=16
        pkt=d[off:off+incl]; off+=incl
        if linktype==1: eth=pkt[12:14]; p=pkt[14:]
        elif linktype==113: eth=pkt[14:16]; p=pkt[16:]
        else: raise Exception(linktype)
        et=struct.unpack('>H',eth)[0]
        if et==0x0800:
            ihl=(p[0]&15)*4; proto=p[9]; src=p[12:16]; dst=p[16:20]; tot=struct.unpack('>H',p[2:4])[0]; l4=p[ihl:tot]
        elif et==0x86dd:
            proto=p[6]; src=p[8:24]; dst=p[24:40]; l4=p[40:]
        else: continue
        yield proto,src,dst,l4
def write(dirn, name, data):
    os.makedirs(dirn,exist_ok=True)
    open(os.path.join(dirn,name),'wb').write(data)
out=sys.argv[1]
streams=collections.OrderedDict()
n=collections.Counter()
for pcap in ('lan.pcap','lo.pcap'):
    for proto,src,dst,l4 in packets(os.path.join(S,pcap)):
        if proto==17:
            sp,dp=struct.unpack('>HH',l4[:4]); pl=l4[8:]
            if dp==1900: n['ssdp']+=1; write(out+'/ssdp','msearch-%d'%n['ssdp'],pl)
            if dp==5351: n['natpmp']+=1; write(out+'/pcp-raw','req-%d'%n['natpmp'],pl)
        elif proto==6:
            sp,dp,seq=struct.unpack('>HHI',l4[:8]); doff=(l4[12]>>4)*4; pl=l4[doff:]
            if dp in (5000,9780) and pl:
                k=(dp,sp)
                s=streams.setdefault(k,{})
                s.setdefault(seq,pl)
for (dp,sp),segs in streams.items():
    data=b''.join(segs[k] for k in sorted(segs))
    kind='http' if dp==5000 else 'api'
    n[kind]+=1
    write(out+'/'+kind+'-raw','conn-%d'%n[kind],data)
print(n)
