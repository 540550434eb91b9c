// Package inetcsum is the Internet checksum (RFC 1071) shared by the user-space packet code
// of edgebpf's proxies: one's-complement sums over 16-bit big-endian words.
package inetcsum

// Add adds b's 16-bit big-endian words to the one's-complement accumulator sum; an odd last
// byte counts as the high byte of a word.
func Add(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// Fold folds sum to 16 bits and complements it: the checksum to store.
func Fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Checksum is the Internet checksum of b; a buffer that holds a valid checksum sums to 0.
func Checksum(b []byte) uint16 { return Fold(Add(0, b)) }
