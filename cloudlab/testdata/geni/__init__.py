# A stand-in for geni-lib, for cloudlab_test.go only: geni-lib is on PyPI, which the build
# machine cannot reach. It implements the few calls profile.py makes, with geni-lib's names
# and standalone behaviour (parameters from --name value arguments, the request RSpec on
# standard output, reported errors printed and exit status 1). It is not geni-lib: the portal
# itself is the real test.
