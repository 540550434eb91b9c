"""Stand-in for geni.portal (see __init__.py)."""

import argparse
import sys

from geni.rspec import pg


class ParameterType(object):
    INTEGER = "integer"
    STRING = "string"
    BOOLEAN = "boolean"
    IMAGE = "image"
    AGGREGATE = "aggregate"
    NODETYPE = "nodetype"

    argparsemap = {INTEGER: int, STRING: str, BOOLEAN: lambda v: v.lower() in ("1", "true", "yes"),
                   IMAGE: str, AGGREGATE: str, NODETYPE: str}


class ParameterError(Exception):
    def __init__(self, message, paramList):
        super(ParameterError, self).__init__(message)
        self.message = message
        self.paramList = paramList


class ParameterWarning(ParameterError):
    pass


class Context(object):
    def __init__(self):
        self._parameters = {}
        self._errors = []
        self._warnings = []

    def defineParameter(self, name, description, typ, defaultValue, legalValues=None,
                        longDescription=None, advanced=False, groupId=None, hide=False):
        self._parameters[name] = (typ, defaultValue, legalValues)

    def bindParameters(self):
        parser = argparse.ArgumentParser()
        for name, (typ, default, legal) in self._parameters.items():
            parser.add_argument("--" + name, type=ParameterType.argparsemap[typ], default=default, choices=legal)
        return parser.parse_args()

    def reportError(self, err, immediate=False):
        self._errors.append(err)
        if immediate:
            self.verifyParameters()

    def reportWarning(self, warning):
        self._warnings.append(warning)

    def verifyParameters(self):
        for w in self._warnings:
            sys.stderr.write("warning: %s %s\n" % (w.paramList, w.message))
        for e in self._errors:
            sys.stderr.write("error: %s %s\n" % (e.paramList, e.message))
        if self._errors:
            sys.exit(1)

    def makeRequestRSpec(self):
        return pg.Request()

    def printRequestRSpec(self, request):
        sys.stdout.write(request.toXMLString())


context = Context()
