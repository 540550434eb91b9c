package netsetup

// CreateNamespace exposes createNamespace to tests that need a namespace no session records.
var CreateNamespace = createNamespace
