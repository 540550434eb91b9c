"""edgebpf on bare metal: one or more physical nodes to reproduce the Riegel 2024 and
Weinhold 2023 evaluations with edgebpf.

Each node runs the whole suite on its own: edgebpf builds its emulated edge worker nodes out of
network namespaces on one machine, so the nodes need no links between them. Use several nodes
to run repetitions or profiles side by side on identical hardware.

With "Cross-node" set, the experiment is two nodes joined by a link (10.10.1.1 and 10.10.1.2
/24): each runs one worker of an edgebpf cluster whose underlay is that link, and
cloudlab/run-cross.sh measures between them.

Instructions:
After the experiment is ready, follow cloudlab/README.md in the edgebpf repository: copy the
binary up and run a profile with cloudlab/run-remote.sh, which bootstraps the node, checks its
kernel, runs the profile and fetches the results directory with its HTML report. The default
image (Ubuntu 22.04, Linux 5.15) lacks TCX (Linux 6.6): edgebpf skips the ebpf data plane
there unless you install the HWE kernel (bootstrap.sh --hwe-kernel) or pick Ubuntu 24.04.
"""

import re

import geni.portal as portal
import geni.rspec.pg as pg

# The Riegel results were measured on a CloudLab xl170 (10 cores, 64 GB, Ubuntu 22.04).
DEFAULT_HWTYPE = "xl170"
DEFAULT_IMAGE = "urn:publicid:IDN+emulab.net+image+emulab-ops//UBUNTU22-64-STD"
MAX_NODES = 8
# The cross-node link's network: node i has host address LAN_PREFIX.(i+1); run-cross.sh gives
# the workers .101 and .102.
LAN_PREFIX = "10.10.1"

pc = portal.Context()
pc.defineParameter(
    "hwtype", "Hardware type", portal.ParameterType.NODETYPE, DEFAULT_HWTYPE,
    longDescription="CloudLab node type, such as xl170 (Utah, 10 cores, the thesis's), "
    "c220g5 (Wisconsin) or m510 (Utah). Every node of the experiment gets this type.")
pc.defineParameter(
    "nodeCount", "Number of nodes", portal.ParameterType.INTEGER, 1,
    longDescription="1 to %d independent nodes; each runs the suite on its own." % MAX_NODES)
pc.defineParameter(
    "osImage", "OS image", portal.ParameterType.IMAGE, DEFAULT_IMAGE,
    longDescription="Disk image URN. Ubuntu 22.04 is the thesis's; Ubuntu 24.04 "
    "(urn:publicid:IDN+emulab.net+image+emulab-ops//UBUNTU24-64-STD) has Linux 6.8 and so TCX "
    "for the ebpf data plane without a kernel upgrade.")
pc.defineParameter(
    "crossNode", "Cross-node", portal.ParameterType.BOOLEAN, False,
    longDescription="Two nodes joined by a link (%s.1 and %s.2/24) for edgebpf's cross-node "
    "measurements (cloudlab/run-cross.sh); needs Number of nodes 2." % (LAN_PREFIX, LAN_PREFIX))
params = pc.bindParameters()

# Out-of-range values are reported to the user by the portal, each next to its parameter.
if not isinstance(params.nodeCount, int) or params.nodeCount < 1 or params.nodeCount > MAX_NODES:
    pc.reportError(portal.ParameterError(
        "Number of nodes must be 1 to %d, not %s." % (MAX_NODES, params.nodeCount), ["nodeCount"]))
if params.crossNode and params.nodeCount != 2:
    pc.reportError(portal.ParameterError(
        "Cross-node joins exactly 2 nodes by a link: set Number of nodes to 2, not %s." % (params.nodeCount,),
        ["nodeCount", "crossNode"]))
if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", str(params.hwtype)):
    pc.reportError(portal.ParameterError(
        "Hardware type %r is not a node type name such as xl170." % (params.hwtype,), ["hwtype"]))
if not re.match(r"^urn:publicid:IDN\+[^+]+\+image\+\S+$", str(params.osImage)):
    pc.reportError(portal.ParameterError(
        "OS image %r is not an image URN such as %s." % (params.osImage, DEFAULT_IMAGE), ["osImage"]))
elif "UBUNTU22" in str(params.osImage).upper() or "UBUNTU20" in str(params.osImage).upper():
    pc.reportWarning(portal.ParameterWarning(
        "This image's kernel predates Linux 6.6: the ebpf data plane needs TCX and is skipped "
        "unless you run bootstrap.sh --hwe-kernel and reboot (cloudlab/README.md).", ["osImage"]))
pc.verifyParameters()

request = pc.makeRequestRSpec()
link = request.Link("link0") if params.crossNode else None
for i in range(params.nodeCount):
    node = request.RawPC("node%d" % i)
    node.hardware_type = params.hwtype
    node.disk_image = params.osImage
    if link is not None:
        iface = node.addInterface("if1")
        iface.addAddress(pg.IPv4Address("%s.%d" % (LAN_PREFIX, i + 1), "255.255.255.0"))
        link.addInterface(iface)
pc.printRequestRSpec(request)
