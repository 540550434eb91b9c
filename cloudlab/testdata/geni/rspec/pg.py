"""Stand-in for geni.rspec.pg (see geni/__init__.py): a request of raw PCs and links, written
as geni-lib writes it."""

from xml.sax.saxutils import quoteattr


class IPv4Address(object):
    def __init__(self, address, netmask):
        self.address = address
        self.netmask = netmask


class Interface(object):
    def __init__(self, node, name):
        self.client_id = "%s:%s" % (node.client_id, name)
        self.addresses = []

    def addAddress(self, address):
        self.addresses.append(address)


class RawPC(object):
    def __init__(self, client_id):
        self.client_id = client_id
        self.hardware_type = None
        self.disk_image = None
        self.exclusive = True
        self.interfaces = []

    def addInterface(self, name):
        iface = Interface(self, name)
        self.interfaces.append(iface)
        return iface


class Link(object):
    def __init__(self, client_id):
        self.client_id = client_id
        self.interfaces = []

    def addInterface(self, iface):
        self.interfaces.append(iface)


class Request(object):
    def __init__(self):
        self.nodes = []
        self.links = []

    def RawPC(self, client_id):
        n = RawPC(client_id)
        self.nodes.append(n)
        return n

    def Link(self, client_id):
        link = Link(client_id)
        self.links.append(link)
        return link

    def toXMLString(self):
        out = ['<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">']
        for n in self.nodes:
            out.append('  <node client_id=%s exclusive="%s">' % (quoteattr(n.client_id), str(n.exclusive).lower()))
            out.append('    <sliver_type name="raw-pc">')
            if n.disk_image:
                out.append('      <disk_image name=%s/>' % quoteattr(n.disk_image))
            out.append('    </sliver_type>')
            if n.hardware_type:
                out.append('    <hardware_type name=%s/>' % quoteattr(n.hardware_type))
            for i in n.interfaces:
                out.append('    <interface client_id=%s>' % quoteattr(i.client_id))
                for a in i.addresses:
                    out.append('      <ip address=%s type="ipv4" netmask=%s/>' % (quoteattr(a.address), quoteattr(a.netmask)))
                out.append('    </interface>')
            out.append('  </node>')
        for link in self.links:
            out.append('  <link client_id=%s>' % quoteattr(link.client_id))
            for i in link.interfaces:
                out.append('    <interface_ref client_id=%s/>' % quoteattr(i.client_id))
            out.append('  </link>')
        out.append('</rspec>')
        return "\n".join(out) + "\n"
