package firewall

//go:generate go tool bpf2go -target bpfel -type fw_rule -type flow_key firewall ../../../../bpf/firewall.c -- -nostdinc -I../../../../bpf/include
