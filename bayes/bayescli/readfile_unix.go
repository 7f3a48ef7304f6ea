//go:build unix

package bayescli

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// readFile reads at most max bytes of the file at p with plain system calls: os.Open
// also tries to register every file with the network poller (four fcntl and an
// epoll_ctl, which a regular file refuses), two thirds of the system calls of
// classifying a directory of small messages.
func readFile(p string, max int64) ([]byte, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	size := int64(0)
	if syscall.Fstat(fd, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG {
		size = st.Size
	}
	raw, err := readAtMost(fdReader(fd), size, max)
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: p, Err: err}
	}
	return raw, nil
}

type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	for {
		n, err := syscall.Read(int(r), b)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
