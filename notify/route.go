package notify

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/configs"
)

// ChannelInfo is what routing needs to know of a channel.
type ChannelInfo struct {
	Name        string            // "log", "webhook:<name>", "email:<name>"
	MinSeverity rugwatch.Severity // lowest severity it gets; "" means every event
}

// Channels builds the notifiers of cfg: the log channel first (always on),
// then one per webhook and email entry. Secrets stay references, resolved
// through r at each send.
func Channels(cfg *configs.Config, r configs.Resolver, log *slog.Logger) ([]Notifier, error) {
	if log == nil {
		return nil, errors.New("build alert channels: nil logger")
	}
	out := []Notifier{&Log{Logger: log}}
	seen := map[string]bool{LogChannel: true}
	add := func(n Notifier) error {
		if seen[n.Name()] {
			return fmt.Errorf("build alert channels: duplicate channel %s", n.Name())
		}
		seen[n.Name()] = true
		out = append(out, n)
		return nil
	}
	for _, w := range cfg.Notify.Webhooks {
		if err := add(&Webhook{Config: w, Resolver: r}); err != nil {
			return nil, err
		}
	}
	for _, e := range cfg.Notify.Email {
		if err := add(&Email{Config: e, Resolver: r}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ChannelInfos lists the channels Channels builds, with their minimum
// severities, for Route.
func ChannelInfos(cfg *configs.Config) []ChannelInfo {
	out := []ChannelInfo{{Name: LogChannel}}
	for _, w := range cfg.Notify.Webhooks {
		out = append(out, ChannelInfo{Name: "webhook:" + w.Name, MinSeverity: rugwatch.Severity(w.MinSeverity)})
	}
	for _, e := range cfg.Notify.Email {
		out = append(out, ChannelInfo{Name: "email:" + e.Name, MinSeverity: rugwatch.Severity(e.MinSeverity)})
	}
	return out
}

// ByName indexes notifiers by Name, as Dispatcher.Channels wants them.
func ByName(ns []Notifier) map[string]Notifier {
	m := make(map[string]Notifier, len(ns))
	for _, n := range ns {
		m[n.Name()] = n
	}
	return m
}

// Route returns the names of the channels e goes to: the log channel
// always, every other channel whose minimum severity is at most e's.
func Route(channels []ChannelInfo, e rugwatch.Event) []string {
	var out []string
	for _, c := range channels {
		if c.Name == LogChannel || c.MinSeverity == "" || c.MinSeverity.Rank() <= e.Severity.Rank() {
			out = append(out, c.Name)
		}
	}
	return out
}
