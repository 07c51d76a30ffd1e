package engine

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// maxLogBytes bounds what Logs reads of a container's output: the health
// gate shows a few lines, and a container that prints megabytes per line
// must not make the agent hold them all.
const maxLogBytes = 1 << 20

// maxLogLine bounds one line as returned, for the same reason.
const maxLogLine = 2048

// Logs returns the last tail lines (stdout and stderr) of the container id
// (an ID or a name), oldest first, without their newlines. A container
// without a TTY has its output multiplexed by the engine; one with a TTY
// has a single raw stream, so the container is inspected first to know
// which.
func (e *Engine) Logs(ctx context.Context, id string, tail int) ([]string, error) {
	if tail <= 0 {
		return nil, nil
	}
	info, err := e.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("logs of container %s: %w", shortID(id), err)
	}
	tty := info.Container.Config != nil && info.Container.Config.Tty
	rc, err := e.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Tail:       strconv.Itoa(tail),
	})
	if err != nil {
		return nil, fmt.Errorf("logs of container %s: %w", shortID(id), err)
	}
	defer rc.Close()
	src := io.LimitReader(rc, maxLogBytes)
	var buf bytes.Buffer
	if tty {
		_, err = io.Copy(&buf, src)
	} else {
		// Both streams into one buffer: the order the lines arrive in is
		// the order the engine logged them.
		_, err = stdcopy.StdCopy(&buf, &buf, src)
	}
	if err != nil {
		return nil, fmt.Errorf("read logs of container %s: %w", shortID(id), err)
	}
	return splitLogLines(buf.Bytes(), tail), nil
}

// splitLogLines cuts output into at most the last tail lines, dropping
// carriage returns and cutting overlong lines.
func splitLogLines(b []byte, tail int) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), maxLogBytes+1)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if len(line) > maxLogLine {
			line = line[:maxLogLine] + " ..."
		}
		lines = append(lines, line)
	}
	if len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	return lines
}
