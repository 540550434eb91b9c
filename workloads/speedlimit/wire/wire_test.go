package wire

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMessageIsBigEndian(t *testing.T) {
	b := Message{Op: GetSpeedLimit, Value: 0x01020304}.Append(nil)
	assert.Equal(t, []byte{0, 0, 0, 4, 1, 2, 3, 4}, b)
	m, err := Decode(b)
	require.NoError(t, err)
	assert.Equal(t, Message{Op: GetSpeedLimit, Value: 0x01020304}, m)
	var p [8]byte
	Message{Op: Reply, Value: 120}.Put(p[:])
	assert.Equal(t, []byte{0, 0, 0, 3, 0, 0, 0, 120}, p[:])
	for _, n := range []int{0, 7, 9} {
		_, err := Decode(make([]byte, n))
		assert.ErrorIs(t, err, ErrSize)
	}
	assert.True(t, OutOfRange.Known())
	assert.False(t, Op(6).Known())
	assert.Equal(t, "op(6)", Op(6).String())
	assert.Equal(t, "GET_SPEED_LIMIT", GetSpeedLimit.String())
}

func TestLimit(t *testing.T) {
	assert.Equal(t, 120.0, Limit(0))
	assert.Equal(t, 120.0, Limit(29))
	assert.Equal(t, 120.0, Limit(30), "45*cos(0)+75")
	assert.InDelta(t, 75.0, Limit(65), 1e-9, "cos(pi/2)")
	assert.Equal(t, 30.0, Limit(100))
	assert.Equal(t, 30.0, Limit(1<<40))
	assert.Equal(t, uint32(75), LimitKmh(65))
	assert.Equal(t, uint32(30), LimitKmh(99), "45*cos(69*pi/70)+75 = 30.05")
	prev := Limit(0)
	for c := uint64(1); c <= 1000; c++ {
		l := Limit(c)
		assert.LessOrEqual(t, l, prev, "the limit never rises with more cars (%d)", c)
		assert.True(t, l >= MinLimit && l <= MaxLimit)
		prev = l
	}
}
