# Builds fuzz/seeds/ from what capture.sh caught (in $PF_SEED, default /tmp/pf-seed) and from
# the README's examples; PCP datagrams and the other SSDP search targets are laid out by hand
# (RFC 6887, upnpc's M-SEARCH) as the lab has no PCP client binary.
import os, re, struct, glob, shutil, ipaddress
S=os.environ.get('PF_SEED','/tmp/pf-seed'); raw=S+'/raw'
out=os.path.join(os.path.dirname(os.path.abspath(__file__)),'..','seeds')
shutil.rmtree(out, ignore_errors=True)
def put(target, name, data):
    d=os.path.join(out,target); os.makedirs(d,exist_ok=True)
    open(os.path.join(d,name),'wb').write(data if isinstance(data,bytes) else data.encode())
def slug(s): return re.sub(r'[^A-Za-z0-9]+','-',s).strip('-')[:60]
# HTTP heads and SOAP bodies, from upnpc's connections.
seen=set(); soap=set()
for f in sorted(glob.glob(raw+'/http-raw/*'), key=lambda p:int(p.split('-')[-1])):
    data=open(f,'rb').read()
    head,_,body=data.partition(b'\r\n\r\n')
    first=head.split(b'\r\n')[0].decode()
    act=re.search(rb'SOAPAction: "[^#]*#(\w+)"',head)
    key=first+(act.group(1).decode() if act else '')
    if key in seen: continue
    seen.add(key)
    put('http', slug(key), b'\x00'+data)
    if act and body:
        put('soap', act.group(1).decode(), body)
# SSDP: the M-SEARCHes upnpc sent, and one of the box's own NOTIFYs.
seen=set(); notify=False
for f in sorted(glob.glob(raw+'/ssdp/*')):
    data=open(f,'rb').read()
    if data.startswith(b'M-SEARCH'):
        st=re.search(rb'ST: ([^\r]*)',data).group(1).decode()
        if st in seen: continue
        seen.add(st); put('ssdp','msearch-'+slug(st),data)
    elif not notify:
        notify=True; put('ssdp','notify-alive',data)
# NAT-PMP from natpmpc (flags 0: IPv4).
for i,f in enumerate(sorted(glob.glob(raw+'/pcp-raw/*'))):
    data=open(f,'rb').read()
    put('pcp','natpmpc-%d'%(i+1), b'\x00'+data)
# API requests from the CLI: route, flags, path parameter, query, body.
ROUTES=[("GET","/metrics"),("GET","/api/v1/openapi.json"),("GET","/api/v1/shares"),("POST","/api/v1/shares"),("GET","/api/v1/shares/{id}"),("PATCH","/api/v1/shares/{id}"),("DELETE","/api/v1/shares/{id}"),("POST","/api/v1/shares/{id}/enable"),("POST","/api/v1/shares/{id}/disable"),("GET","/api/v1/pinholes"),("POST","/api/v1/pinholes"),("DELETE","/api/v1/pinholes/{id}"),("POST","/api/v1/pinholes/{id}/enable"),("POST","/api/v1/pinholes/{id}/disable"),("GET","/api/v1/devices"),("PUT","/api/v1/devices/{addr}"),("POST","/api/v1/devices/revoke-unused"),("GET","/api/v1/settings"),("PATCH","/api/v1/settings"),("GET","/api/v1/events"),("GET","/api/v1/status")]
from urllib.parse import unquote_to_bytes
for f in sorted(glob.glob(raw+'/api-raw/*'), key=lambda p:int(p.split('-')[-1])):
    data=open(f,'rb').read()
    head,_,body=data.partition(b'\r\n\r\n')
    method,target,_=head.split(b'\r\n')[0].decode().split(' ')
    path,_,query=target.partition('?')
    for i,(m,pat) in enumerate(ROUTES):
        rx='^'+re.sub(r'\\\{\w+\\\}','([^/]+)',re.escape(pat))+'$'
        mm=re.match(rx,path)
        if m==method and mm:
            param=unquote_to_bytes(mm.group(1)) if mm.groups() else b''
            put('api', slug(method+' '+path), bytes([i,0])+param+b'\n'+unquote_to_bytes(query)+b'\n'+body)
            break
    else: print('no route', method, path)
# The state directory: the journal of the session above after its first snapshot, and the
# snapshot the restarted daemon wrote.
def store(name, snap, journal, flags=0):
    sb=open(snap,'rb').read() if snap else None
    jb=open(journal,'rb').read()
    n=0xFFFF if sb is None else len(sb)
    put('store', name, bytes([flags])+struct.pack('<H',n)+(sb or b'')+jb)
store('session-journal', S+'/store1/snapshot', S+'/store1/journal')
store('restart-snapshot', S+'/state/store/snapshot', S+'/state/store/journal')
store('journal-only', None, S+'/store1/journal')
# Config files: the lab's, and the README's examples.
put('config','lab.toml',open(S+'/portfwd.toml','rb').read())

# SSDP: upnpc's M-SEARCH layout with the other targets it searches for.
for name, st, mx in [('igd1','urn:schemas-upnp-org:device:InternetGatewayDevice:1',2),('igd2','urn:schemas-upnp-org:device:InternetGatewayDevice:2',2),
                 ('wanip1','urn:schemas-upnp-org:service:WANIPConnection:1',2),('all','ssdp:all',3),('rootdevice','upnp:rootdevice',1),
                 ('fw6','urn:schemas-upnp-org:service:WANIPv6FirewallControl:1',2)]:
    put('ssdp','msearch-'+name,'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: %s\r\nMAN: "ssdp:discover"\r\nMX: %d\r\n\r\n'%(st,mx))
# PCP (RFC 6887 sections 7, 11, 12, 13): MAP, PEER and ANNOUNCE as crab_nat lays them out.
def v4(a): return ipaddress.IPv4Address(a).packed and (b'\0'*10+b'\xff\xff'+ipaddress.IPv4Address(a).packed)
def v6(a): return ipaddress.IPv6Address(a).packed
def pcp(op, lifetime, client, fields, options=b''):
    return bytes([2,op,0,0])+struct.pack('>I',lifetime)+client+fields+options
def mapf(nonce, proto, iport, eport, ext): return nonce+bytes([proto,0,0,0])+struct.pack('>HH',iport,eport)+ext
def peerf(rport, remote): return struct.pack('>HH',rport,0)+remote
nonce=bytes(range(1,13))
me=v4('10.0.0.10'); me6=v6('2001:db8:77::10'); any4=v4('0.0.0.0')
put('pcp','pcp-map-tcp', b'\x00'+pcp(1,7200,me,mapf(nonce,6,8080,8080,any4)))
put('pcp','pcp-map-udp-delete', b'\x00'+pcp(1,0,me,mapf(nonce,17,5000,0,any4)))
put('pcp','pcp-map-prefer-failure-filter', b'\x00'+pcp(1,3600,me,mapf(nonce,6,22,2222,any4),
    bytes([2,0,0,0])+bytes([3,0,0,20,0,128])+struct.pack('>H',0)+v4('198.51.100.2')))
put('pcp','pcp-map-third-party', b'\x01'+pcp(1,600,me,mapf(nonce,17,53,0,any4), bytes([1,0,0,16])+v4('10.0.0.11')))
put('pcp','pcp-peer', b'\x00'+pcp(2,600,me,mapf(nonce,6,9000,9000,v4('198.51.100.1'))+peerf(443,v4('198.51.100.2'))))
put('pcp','pcp-announce', b'\x00'+pcp(0,0,me,b''))
put('pcp','pcp-v1', b'\x00'+bytes([1,1,0,0])+b'\0'*56)
put('pcp','pcp6-map', b'\x10'+pcp(1,3600,me6,mapf(nonce,6,443,443,v6('::'))))
put('pcp','pcp6-map-filter', b'\x10'+pcp(1,3600,me6,mapf(nonce,17,5000,5000,v6('::')),
    bytes([3,0,0,20,0,128])+struct.pack('>H',4000)+v6('2001:db8:ff::2')))
put('pcp','pcp6-peer', b'\x10'+pcp(2,600,me6,mapf(nonce,6,8443,8443,me6)+peerf(443,v6('2001:db8:ff::2'))))
put('pcp','pcp6-announce', b'\x10'+pcp(0,0,me6,b''))
# HTTP: what else control points send: the other descriptions, HEAD, GENA SUBSCRIBE.
for name, req in [('GET-WANIPCn-xml','GET /WANIPCn.xml HTTP/1.1\r\nHost: 10.77.0.1:5000\r\nConnection: close\r\n\r\n'),
                  ('GET-WANIPv6FC-xml','GET /WANIPv6FC.xml HTTP/1.1\r\nHost: 10.77.0.1:5000\r\n\r\n'),
                  ('HEAD-rootDesc','HEAD /rootDesc.xml HTTP/1.1\r\nHost: 10.77.0.1:5000\r\n\r\n'),
                  ('SUBSCRIBE','SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: 10.77.0.1:5000\r\nCALLBACK: <http://10.0.0.10:49152/>\r\nNT: upnp:event\r\nTIMEOUT: Second-1800\r\n\r\n'),
                  ('keepalive-two-gets','GET /rootDesc.xml HTTP/1.1\r\nHost: 10.77.0.1:5000\r\n\r\nGET /WANCfg.xml HTTP/1.1\r\nHost: 10.77.0.1:5000\r\n\r\n')]:
    put('http', name, b'\x00'+req.encode())
# API: the routes the CLI session above did not take.
for name, route, param, query, body in [
    ('GET-metrics',0,'','',''),('GET-openapi',1,'','',''),('GET-share',4,'tcp:8080','',''),
    ('GET-share-remote',4,'udp:27015@198.51.100.2','',''),('POST-pinholes-enable',12,'tcp:[2001:db8:77::10]:443','',''),
    ('DELETE-pinhole',11,'udp:[2001:db8:77::10]:5000','',''),('GET-devices',14,'','',''),
    ('PUT-device-null',15,'10.0.0.10','','{"allowed": null}'),('PUT-device-true',15,'10.0.0.11','','{"allowed": true}'),
    ('POST-revoke-unused',16,'','',''),('GET-settings',17,'','',''),
    ('PATCH-settings-all',18,'','','{"upnp_enabled": false, "secure_mode": true, "quota_per_client": 4, "quota_total": 64}'),
    ('GET-events-wait',19,'','after=3&limit=10&wait=1',''),
    ('POST-share-remote',3,'','','{"proto":"udp","external_port":27016,"internal":"10.0.0.10:27016","remote":"198.51.100.7","enabled":false}'),
    ('PATCH-share-port',5,'tcp:8080','','{"external_port": 8081, "name": "web2", "enabled": true}')]:
    put('api', name, bytes([route,0])+param.encode()+b'\n'+query.encode()+b'\n'+body.encode())
# Config: the README's and the module docs' examples.
put('config','readme-shares.toml','''wan = "eth0"
lan = "eth1"
xdp_mode = "auto"

[[share]]
name = "web"
proto = "tcp"
external_port = 8080
internal = "192.168.1.10:80"

[[share]]
proto = "udp"
external_port = 27015
internal = "192.168.1.20:27015"
remote = "198.51.100.7"   # only this remote host may use it
enabled = false           # kept, but not forwarded
''')
put('config','readme-upnp.toml','''[upnp]
enabled = true
igd_version = 1
secure_mode = false
max_lease = 3600
quota_per_client = 32
quota_total = 256
devices = ["192.168.1.20", "192.168.1.64/28", "02:11:22:33:44:55"]
notify_interval = 900
port = 5000

[[upnp.rule]]
action = "deny"
external_ports = "6000-6999"
clients = "192.168.1.0/24"
internal_ports = "1-65535"

[[upnp.rule]]
action = "allow"
external_ports = "1024-65535"
''')
put('config','readme-api-pcp-ipv6.toml','''state_dir = "/var/lib/portfwd"

[pcp]
enabled = true
third_party = true
min_lifetime = 120
max_lifetime = 86400

[ipv6]
inbound = "pass"

[api]
listen = "0.0.0.0:9780"
metrics_auth = true
webhook = "http://192.168.1.2:8000/portfwd"

[wan_link]
flap_window = 300
''')
# Text forms: the README's share ids, specs, pinholes, subnets, devices, webhook URLs.
for i, t in enumerate(['tcp:8080=192.168.1.10:80','udp:27015@198.51.100.7=192.168.1.20:27015','tcp:8080','udp:53@198.51.100.7',
          'tcp:[2001:db8:77::10]:443','tcp:443=[2001:db8:77::10]:443','192.168.1.64/28','10.0.0.7','02:11:22:33:44:55',
          '1024-65535','http://192.168.1.2:8000/portfwd','http://[::1]:8080/hook']):
    put('ids', 'text-%d'%i, t)
# dyndns2: answers as providers send them (status, body), names, and provider URLs.
for name, status, body in [('good',200,'good 198.51.100.1'),('nochg',200,'nochg 198.51.100.1\n'),('good-bare',200,'good'),
        ('good-localhost',200,'good 127.0.0.1'),('badauth',200,'badauth'),('not-donator',200,'!donator'),('notfqdn',200,'notfqdn'),
        ('nohost',200,'nohost'),('numhost',200,'numhost'),('abuse',200,'abuse'),('badagent',200,'badagent'),('dnserr',200,'dnserr'),
        ('911',200,'911'),('401-badauth',401,'badauth'),('503-html',503,'<html><body>Service Unavailable</body></html>'),
        ('two-lines',200,'\r\ngood 198.51.100.1\r\nnohost\r\n')]:
    put('dyndns2', 'answer-'+name, b'\x00'+struct.pack('>H',status)+body.encode())
for i, t in enumerate(['home.example.org','Home.Dyndns.Test','a&b=c d/\u00e9']):
    put('dyndns2', 'name-%d'%i, b'\x01'+t.encode())
for i, t in enumerate(['https://members.dyndns.org','https://dynupdate.no-ip.com/nic/update','http://198.51.100.2:8245/update.php?system=dyndns','https://[2001:db8::53]:8443']):
    put('dyndns2', 'url-%d'%i, b'\x02'+t.encode())
put('config','readme-ddns-dyndns2.toml','[ddns]\nprovider = "dyndns2"\nserver = "https://members.dyndns.org"\nname = "home.example.org"\nusername = "me"\npassword = "secret"\ninterval = 3600\n')
