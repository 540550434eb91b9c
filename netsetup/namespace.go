package netsetup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted, as `ip netns` does.
const netnsDir = "/run/netns"

// Doer runs a function inside a network namespace. *Namespace implements it; so do stand-ins
// that run in the caller's own namespace (bench.Current). Code that only needs to create
// sockets or attach programs in a namespace (bench's meters, the speed-limit workload) takes
// a Doer, not a *Namespace.
type Doer interface {
	Do(fn func() error) error
}

var _ Doer = (*Namespace)(nil)

// Namespace is a named network namespace the harness created. It implements Doer.
type Namespace struct {
	Name   string
	handle netns.NsHandle
}

// onThread is the single place where edgebpf switches network namespaces. It runs fn on a
// fresh goroutine locked to its OS thread. If target is valid the thread first enters it; fn
// may itself move the thread (creating a namespace does). Afterwards the thread is switched
// back to the namespace it started in; if that fails the thread stays locked and dies with
// its goroutine, so no goroutine ever runs in a namespace it did not ask for.
func onThread(target netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if target.IsOpen() {
			if err := netns.Set(target); err != nil {
				// A failed setns leaves the thread where it was.
				runtime.UnlockOSThread()
				errc <- fmt.Errorf("enter network namespace: %w", err)
				return
			}
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime ends it with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("return to original network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Do runs fn with the calling thread inside the namespace. Sockets fn creates belong to the
// namespace and may be used from any goroutine afterwards; goroutines fn starts do not run
// in the namespace.
func (n *Namespace) Do(fn func() error) error {
	if !n.handle.IsOpen() {
		// Never fall through to running fn wherever the caller happens to be (the host).
		return fmt.Errorf("namespace %s is closed", n.Name)
	}
	if err := onThread(n.handle, fn); err != nil {
		return fmt.Errorf("in namespace %s: %w", n.Name, err)
	}
	return nil
}

// Handle returns the namespace's file descriptor handle; it stays owned by n.
func (n *Namespace) Handle() netns.NsHandle { return n.handle }

// Path returns the namespace's bind-mount path, usable with `ip netns exec` and nsenter.
func (n *Namespace) Path() string { return filepath.Join(netnsDir, n.Name) }

// Netlink returns a netlink handle that operates inside the namespace without switching any
// thread. The caller closes it.
func (n *Namespace) Netlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(n.handle)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n.Name, err)
	}
	return h, nil
}

// Start starts cmd with the namespace as its network namespace. The child is killed if the
// thread that started it ends, which only happens if leaving the namespace failed.
func (n *Namespace) Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return n.Do(cmd.Start)
}

// Sysctl writes value to a /proc/sys/net key (e.g. "ipv4/ip_forward") inside the namespace.
func (n *Namespace) Sysctl(key, value string) error {
	return n.Do(func() error {
		p := filepath.Join("/proc/sys/net", filepath.Clean("/"+key))
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("set sysctl net/%s: %w", key, err)
		}
		return nil
	})
}

var (
	netnsDirMu    sync.Mutex
	netnsDirReady bool
)

// prepareNetnsDir sets /run/netns up exactly as iproute2's `ip netns add` does: it creates
// the directory, makes it a shared mount point, and if it is not a mount point yet first
// bind-mounts it on itself. Done before the first namespace exists, it means a later
// `ip netns add` finds the mount point ready and no longer stacks a new mount over
// namespace files already there (which then could not be removed: EBUSY). It runs once per
// process; after an error the next namespace tries again. Like iproute2, it changes the
// mount namespace the process runs in, never a network namespace.
//
// Note: MkdirAll alone, as netns.NewNamed does, was the first design: it left /run/netns a
// plain directory until something else ran `ip netns add`, and every namespace created
// before that leaked.
func prepareNetnsDir() error {
	netnsDirMu.Lock()
	defer netnsDirMu.Unlock()
	if netnsDirReady {
		return nil
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	madeMount := false
	for {
		err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			break
		}
		// EINVAL: not a mount point yet. Make it one, once, and try again.
		if !errors.Is(err, unix.EINVAL) || madeMount {
			return fmt.Errorf("make %s a shared mount point (mount --make-shared): %w", netnsDir, err)
		}
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s on itself: %w", netnsDir, err)
		}
		madeMount = true
	}
	netnsDirReady = true
	return nil
}

// createNamespace makes a new named namespace with its loopback up.
func createNamespace(name string) (*Namespace, error) {
	if err := prepareNetnsDir(); err != nil {
		return nil, err
	}
	var h netns.NsHandle = -1
	err := onThread(netns.None(), func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		// netns.NewNamed leaves its mount point file behind when the mount fails.
		_ = os.Remove(filepath.Join(netnsDir, name))
		return nil, fmt.Errorf("create network namespace %s: %w", name, err)
	}
	ns := &Namespace{Name: name, handle: h}
	if err := ns.linkUp("lo"); err != nil {
		return nil, errors.Join(err, ns.destroy())
	}
	return ns, nil
}

// openNamespace opens an existing named namespace, e.g. one a running node created.
func openNamespace(name string) (*Namespace, error) {
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", name, err)
	}
	return &Namespace{Name: name, handle: h}, nil
}

// OpenNamespace opens a named namespace created by a running edgebpf process, for `edgebpf
// exec` and tests. Close releases the handle without deleting the namespace.
func OpenNamespace(name string) (*Namespace, error) {
	if !HasPrefix(name) {
		return nil, fmt.Errorf("namespace %q was not created by edgebpf (its name lacks the %q prefix)", name, Prefix)
	}
	return openNamespace(name)
}

// Close releases the handle. It does not delete the namespace.
func (n *Namespace) Close() error {
	if !n.handle.IsOpen() {
		return nil
	}
	err := n.handle.Close()
	n.handle = -1
	return err
}

func (n *Namespace) linkUp(name string) error {
	h, err := n.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", name, n.Name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up in %s: %w", name, n.Name, err)
	}
	return nil
}

// destroy kills what still runs inside the namespace, releases the handle and removes the
// bind mount; the kernel frees the namespace and every link in it once nothing holds it.
func (n *Namespace) destroy() error {
	var errs []error
	if _, err := killProcessesIn(n.Path()); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, n.Close())
	if err := deleteNamed(n.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteNamed removes a named namespace's bind mount and file; a missing one is not an error.
func deleteNamed(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}
