// Package cloudlab holds no Go code: it is the CloudLab kit (profile.py, profile.rspec,
// bootstrap.sh, run-remote.sh, README.md), and its tests check the kit and the project's other
// shell scripts (bash -n, shellcheck, the RSpec's shape, profile.py's parameter checks).
package cloudlab
