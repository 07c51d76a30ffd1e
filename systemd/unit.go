// Package systemd ships the unit file that runs the lockstep agent, embedded
// so the binary and the unit it expects never drift apart. It owns the
// unit's text only; readiness and watchdog notifications are sent by the
// agent command itself.
package systemd

import _ "embed"

// Unit is systemd/lockstep.service.
//
//go:embed lockstep.service
var Unit string
