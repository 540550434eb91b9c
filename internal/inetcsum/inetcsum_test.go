package inetcsum

import "testing"

func TestChecksum(t *testing.T) {
	// RFC 1071's example words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(b); got != ^uint16(0xddf2) {
		t.Fatalf("checksum %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	if got := Checksum(append(b, 0x22, 0x0d)); got != 0 {
		t.Fatalf("a buffer with its checksum sums to %#04x, want 0", got)
	}
	if Add(0, []byte{0xab}) != 0xab00 {
		t.Fatal("an odd last byte is the high byte of a word")
	}
}
