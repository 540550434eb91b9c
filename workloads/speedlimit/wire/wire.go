// Package wire is the speed-limit protocol of the Weinhold thesis (reference.md §4): the
// messages a car and a street sign exchange, and the speed-limit formula. It has no
// dependencies, so that the client in package bench and the servers in package speedlimit
// share one definition without bench knowing anything of data planes.
//
// A message is the whole UDP payload: exactly 8 bytes, two unsigned 32-bit fields in network
// byte order (big-endian), OP then VALUE. (The thesis's prototype used host byte order; on the
// wire ours is big-endian whatever the hosts are.)
//
//	GET_SPEED_LIMIT (4)  a car enters the sign's range and asks for the limit; VALUE is ignored.
//	                     The sign counts the car and answers REPLY.
//	REPLY (3)            the sign's answer; VALUE is the limit in km/h, an integer.
//	OUT_OF_RANGE (5)     a car leaves; the sign uncounts it (never below 0) and does not answer.
//
// A datagram of another size or with another OP is not a message: servers do not answer it.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Op is a message's operation.
type Op uint32

// The protocol's operations.
const (
	Reply         Op = 3
	GetSpeedLimit Op = 4
	OutOfRange    Op = 5
)

func (o Op) String() string {
	switch o {
	case Reply:
		return "REPLY"
	case GetSpeedLimit:
		return "GET_SPEED_LIMIT"
	case OutOfRange:
		return "OUT_OF_RANGE"
	}
	return fmt.Sprintf("op(%d)", uint32(o))
}

// Size is the size of every message: the whole UDP payload.
const Size = 8

// DefaultPort is the UDP port the servers listen on unless told otherwise.
const DefaultPort = 5300

// Message is one datagram's payload.
type Message struct {
	Op    Op
	Value uint32
}

// Append appends the message's 8 bytes to b.
func (m Message) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(m.Op))
	return binary.BigEndian.AppendUint32(b, m.Value)
}

// Put writes the message to the first 8 bytes of b, which must be at least that long.
func (m Message) Put(b []byte) {
	binary.BigEndian.PutUint32(b[0:4], uint32(m.Op))
	binary.BigEndian.PutUint32(b[4:8], m.Value)
}

// ErrSize is returned by Decode for a payload that is not exactly Size bytes.
var ErrSize = errors.New("speed-limit message is not 8 bytes")

// Decode reads a payload. It checks only the size: any op decodes, so callers decide what
// an unknown one means.
func Decode(b []byte) (Message, error) {
	if len(b) != Size {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrSize, len(b))
	}
	return Message{Op: Op(binary.BigEndian.Uint32(b[0:4])), Value: binary.BigEndian.Uint32(b[4:8])}, nil
}

// Known reports whether o is one of the protocol's operations.
func (o Op) Known() bool { return o == Reply || o == GetSpeedLimit || o == OutOfRange }

// The bounds of the speed limit in km/h.
const (
	MaxLimit = 120
	MinLimit = 30
)

// Limit is the thesis's formula (its eq. 5.1): the speed limit in km/h when cars cars are in
// range: 120 below 30 cars, 45*cos(pi/70*(cars-30)) + 75 from 30 to 99, 30 from 100 on.
func Limit(cars uint64) float64 {
	switch {
	case cars < 30:
		return MaxLimit
	case cars >= 100:
		return MinLimit
	}
	return 45*math.Cos(math.Pi/70*float64(cars-30)) + 75
}

// LimitKmh is the limit a server answers: Limit rounded to the nearest whole km/h, as every
// configuration sends it (VALUE is an integer).
func LimitKmh(cars uint64) uint32 {
	return uint32(math.Round(Limit(cars)))
}
