package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	xssh "golang.org/x/crypto/ssh"
)

// client is a conn over x/crypto/ssh.
type client struct {
	*xssh.Client
	stop func() bool // stops closing the connection when ctx ends
}

// dialSSH dials addr and logs in. The connection is closed as soon as ctx
// ends, which unblocks the handshake and any running command.
func dialSSH(ctx context.Context, addr string, cfg *xssh.ClientConfig) (conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c, chans, reqs, err := xssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		stop()
		nc.Close()
		return nil, err
	}
	return &client{Client: xssh.NewClient(c, chans, reqs), stop: stop}, nil
}

// maxStderr bounds what is kept of a command's stderr.
const maxStderr = 4 << 10

func (c *client) Run(cmd, stdin string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("open session: %w", err)
	}
	defer s.Close()
	var stderr limitedBuffer
	s.Stdin = strings.NewReader(stdin)
	s.Stderr = &stderr
	err = s.Run(cmd)
	var exit *xssh.ExitError
	if errors.As(err, &exit) {
		return stderr.String(), &exitError{status: exit.ExitStatus(), signal: exit.Signal()}
	}
	return stderr.String(), err
}

func (c *client) Close() error {
	c.stop()
	return c.Client.Close()
}

// limitedBuffer keeps the first maxStderr bytes written to it.
type limitedBuffer struct{ strings.Builder }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxStderr - b.Len(); room > 0 {
		b.Builder.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
