package speedlimit

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue is struct ethtool_value of linux/ethtool.h.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with its union holding a pointer (ifr_data), as SIOCETHTOOL
// wants it: 16 bytes of name, then the 24-byte union.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtool runs one legacy ethtool command on iface through SIOCETHTOOL; the socket is
// created in the calling thread's network namespace, so call it inside NS.Do.
func ethtool(iface string, cmd, data uint32) (uint32, error) {
	if len(iface) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q is too long", iface)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:], iface)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&v)
	if errno != 0 {
		return 0, errno
	}
	return v.data, nil
}

// TxChecksum reports whether TX checksum offload is on for iface in ns (ethtool -k: tx-checksumming).
func TxChecksum(ns NS, iface string) (bool, error) {
	var on bool
	err := ns.Do(func() error {
		v, err := ethtool(iface, unix.ETHTOOL_GTXCSUM, 0)
		on = v != 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("read tx checksum offload of %s: %w", iface, err)
	}
	return on, nil
}

// SetTxChecksum turns TX checksum offload of iface in ns on or off (ethtool -K IFACE tx on|off)
// and returns whether it was on before. A sender with the offload on leaves its UDP checksums
// to the device; a veth never fills them in, so the frames cross the veth pair carrying only
// the pseudo-header seed (reference.md §5). The XDP responder accepts those (see
// bpf/speedlimit.c), but only a full checksum can be verified: the harness turns the offload
// off on its clients.
func SetTxChecksum(ns NS, iface string, on bool) (was bool, err error) {
	var data uint32
	if on {
		data = 1
	}
	err = ns.Do(func() error {
		v, err := ethtool(iface, unix.ETHTOOL_GTXCSUM, 0)
		if err != nil {
			return err
		}
		was = v != 0
		if was == on {
			return nil
		}
		_, err = ethtool(iface, unix.ETHTOOL_STXCSUM, data)
		return err
	})
	if errors.Is(err, unix.EOPNOTSUPP) {
		return was, fmt.Errorf("set tx checksum offload of %s: the device does not support changing it: %w", iface, err)
	}
	if err != nil {
		return was, fmt.Errorf("set tx checksum offload of %s: %w", iface, err)
	}
	return was, nil
}
