package netsetup

// CreateNamespace exposes createNamespace to tests that need a namespace no session records.
var CreateNamespace = createNamespace

// BridgePortStates exposes bridgePortStates; BRForwarding is the state of a forwarding port.
var BridgePortStates = bridgePortStates

const BRForwarding = brForwarding
