package proxy

// -mcpu=v3: the round-robin cursor uses an atomic fetch-and-add.
//go:generate go tool bpf2go -target bpfel -type px_backend -type px_service -type px_backend_key -type px_client -type px_session_key -type px_session -type px_underlay proxy ../../../../bpf/proxy.c -- -nostdinc -I../../../../bpf/include -mcpu=v3
