package wire

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/notify"
	"github.com/lockstep-gitops/lockstep/notify/forge"
	"github.com/lockstep-gitops/lockstep/webhook"
)

// PreflightError lists every file a config names that cannot be used. It
// is a config error: the CLI exits 78 with it, and a reload keeps the
// running generation.
type PreflightError struct {
	Config   string   // the config file
	Problems []string // one sentence each, naming the key and the file
}

func (e *PreflightError) Error() string {
	return e.Config + ": " + strings.Join(e.Problems, "\n"+e.Config+": ")
}

// Preflight opens and parses every file cfg names, the way the agent will
// when it starts: the git credentials and known_hosts, the [repo.verify]
// key files, the [webhook] secret, the [[notify]] URL files, the [forge]
// token file, the age identity and the environments' host env files. validate, agent start-up
// and reload all run it, so a missing or unreadable file is found there,
// never at the first deploy or the first failure. It touches no container
// (the git cache directory is created if missing, as any pass would).
func Preflight(cfg *config.Config) error {
	var problems []string
	add := func(err error) {
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if _, err := gitsource.New(SourceOptions(cfg, zerolog.Nop())); err != nil {
		add(fmt.Errorf("[repo]: %w", err))
	}
	if cfg.Webhook.Listen != "" {
		_, err := webhook.New(webhook.Options{SecretFile: cfg.Webhook.SecretFile, Branch: cfg.Repo.Branch, Log: zerolog.Nop(), Nudge: func(webhook.Provider) {}})
		add(err)
	}
	if _, err := NewNotifier(cfg, zerolog.Nop()); err != nil {
		add(err)
	}
	if _, err := NewForge(cfg, zerolog.Nop(), nil, forge.Options{}); err != nil {
		add(err)
	}
	if err := compose.CheckIdentity(cfg.Secrets.AgeIdentity); err != nil {
		add(fmt.Errorf("[secrets].age_identity: %w", err))
	}
	for _, env := range cfg.Environments {
		for _, f := range env.EnvFiles {
			add(readable(f, fmt.Sprintf("[[environment]] %s: env_files", env.Name)))
		}
	}
	for _, set := range cfg.EnvironmentSets {
		for _, f := range set.EnvFiles {
			add(readable(f, fmt.Sprintf("[[environment_set]] %s: env_files", set.Name)))
		}
	}
	if len(problems) > 0 {
		return &PreflightError{Config: cfg.Path, Problems: problems}
	}
	return nil
}

// readable opens f and closes it again.
func readable(f, key string) error {
	h, err := os.Open(f)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("%s: cannot read %s: %v", key, f, err)
	}
	return h.Close()
}

// NewNotifier reads the [[notify]] targets' URL files now, so a missing
// file is an error at start (and in preflight), not at the first failure.
// With no target it returns a nil Notifier, which does nothing.
func NewNotifier(cfg *config.Config, log zerolog.Logger) (*notify.Notifier, error) {
	if len(cfg.Notify) == 0 {
		return nil, nil
	}
	targets := make([]notify.Target, 0, len(cfg.Notify))
	for _, t := range cfg.Notify {
		targets = append(targets, notify.Target{Kind: t.Kind, URLFile: t.URLFile, Events: t.Events})
	}
	n, err := notify.New(targets, notify.Options{Log: log, Version: Version()})
	if err != nil {
		return nil, fmt.Errorf("[[notify]]: %w", err)
	}
	return n, nil
}

// NewForge reads the [forge] token file now, so a missing file is an error
// at start (and in preflight), not at the first deploy. env says what the
// reporter needs of an environment beyond its name (nil: nothing). With no
// [forge] it returns a nil Reporter, which does nothing.
func NewForge(cfg *config.Config, log zerolog.Logger, env func(name string) forge.EnvInfo, opts forge.Options) (*forge.Reporter, error) {
	f := cfg.Forge
	if !f.Enabled() {
		return nil, nil
	}
	opts.Log, opts.Version, opts.Environment = log, Version(), env
	r, err := forge.New(forge.Settings{
		Kind: f.Kind, APIURL: f.APIURL, TokenFile: f.TokenFile, Repository: f.Repository,
		Context: f.Context, Host: f.Host, Deployments: f.Deployments,
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("[forge].%w", err)
	}
	return r, nil
}
