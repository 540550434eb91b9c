// Package cloudlab holds no Go code: it is the CloudLab kit (profile.py, profile.rspec,
// profile-cross.rspec, bootstrap.sh, run-remote.sh, run-cross.sh, README.md), and its tests
// check the kit and the project's other shell scripts (bash -n, shellcheck, the RSpecs' shape,
// profile.py's parameter checks) and, as root, drive run-cross.sh against two stand-in hosts
// (network namespaces joined by a veth, an ssh stand-in that enters them) each running its own
// `edgebpf node`.
package cloudlab
