"""Stand-in for geni.rspec.pg (see geni/__init__.py): a request of raw PCs, written as
geni-lib writes it."""

from xml.sax.saxutils import quoteattr


class RawPC(object):
    def __init__(self, client_id):
        self.client_id = client_id
        self.hardware_type = None
        self.disk_image = None
        self.exclusive = True


class Request(object):
    def __init__(self):
        self.nodes = []

    def RawPC(self, client_id):
        n = RawPC(client_id)
        self.nodes.append(n)
        return n

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
            out.append('  </node>')
        out.append('</rspec>')
        return "\n".join(out) + "\n"
