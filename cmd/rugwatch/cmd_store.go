package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/rugwatch/rugwatch/configs"
	"github.com/rugwatch/rugwatch/monitor"
	"github.com/rugwatch/rugwatch/store"
)

// runStore is the store's own upkeep: migrate.
func (a *App) runStore(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("rugwatch store migrate --to DSN [--json]")
	}
	sub, args := args[0], args[1:]
	if sub == "migrate" {
		return a.runStoreMigrate(ctx, args)
	}
	return usagef("unknown store subcommand %q; type: rugwatch store migrate --to DSN", sub)
}

// runStoreMigrate moves the config's bbolt store into an empty PostgreSQL
// database: the whole bucket tree in one transaction, read back and
// compared, then checked as `rugwatch verify` checks a store (the event
// chain, and every approval's signature against the trusted keys), so
// the database is known to be the same store before the config points
// at it. The bbolt file is held throughout, so that neither a poll nor
// the alert dispatcher moves the chain head or the outbox meanwhile; it
// is left as it was.
func (a *App) runStoreMigrate(ctx context.Context, args []string) error {
	fs := a.newFlags("store migrate")
	to := fs.String("to", "", "the PostgreSQL database to move the store into: a postgres:// `DSN`, or ${env:NAME} or ${file:PATH} holding one")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *to == "" {
		return usagef("rugwatch store migrate --to DSN (postgres://user@host/db, or ${env:NAME} or ${file:PATH} holding it)")
	}
	ref, err := dsnReference(*to)
	if err != nil {
		return err
	}
	if ref.literalPassword {
		fmt.Fprintln(a.Stderr, "rugwatch store migrate: warning: --to carries a password, which the process list and your shell history now hold; pass ${env:NAME} or ${file:PATH} instead")
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	if cfg.Shared() {
		return fmt.Errorf("%s already names a PostgreSQL store (store:); there is no bbolt store to migrate", cfg.Path)
	}
	ver, err := a.verifier(cfg)
	if err != nil {
		return err
	}
	src, err := a.openBoltToMigrate(cfg)
	if err != nil {
		return err
	}
	defer src.Close()
	dsn, err := ref.secret.Resolve(a.resolver())
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	dst, err := store.OpenPostgres(dsn, store.Options{})
	if err != nil {
		return err
	}
	defer dst.Close()

	rep, err := src.CopyTo(dst)
	if errors.Is(err, store.ErrCopyDiffers) {
		fmt.Fprintf(a.Stderr, "rugwatch store migrate: the copy does NOT read back as its source: %v\n", err)
		return errFindings
	}
	if err != nil {
		return err
	}
	l := &monitor.Ledger{DB: dst, Verifier: ver, Where: dst.Path()}
	vrep, err := l.Verify(ctx, nil)
	if err != nil {
		return fmt.Errorf("verifying the copy: %w", err)
	}
	if !vrep.OK {
		printVerify(a, vrep)
		fmt.Fprintf(a.Stderr, "rugwatch store migrate: %s holds an exact copy of %s, but it does NOT verify (and neither does the source: run `rugwatch verify`); do not point the config at it\n",
			dst.Path(), src.Path())
		return errFindings
	}
	next := ref.configValue()
	if *asJSON {
		return writeJSON(a.Stdout, map[string]any{
			"schema_version": 1, "from": src.Path(), "to": dst.Path(),
			"buckets": rep.Buckets, "keys": rep.Keys, "bytes": rep.Bytes,
			"verify": vrep, "store": next,
		})
	}
	fmt.Fprintf(a.Stdout, "migrated %s to %s: %d buckets, %d keys, %d bytes, read back identical\n",
		src.Path(), dst.Path(), rep.Buckets, rep.Keys, rep.Bytes)
	head := vrep.Head
	if head == "" {
		head = "none yet"
	}
	fmt.Fprintf(a.Stdout, "event chain ok (%d events, head %s); %d approvals verified\n", vrep.EventsChecked, head, vrep.ApprovalsChecked)
	fmt.Fprintf(a.Stdout, "\nNext: add this line to %s, then start serve:\n\n  store: %q\n", cfg.Path, next)
	if next == secretsFile {
		fmt.Fprintln(a.Stdout, "\nwith the URL you passed in that file (a config may not carry a password itself).")
	}
	fmt.Fprintln(a.Stdout)
	fmt.Fprintf(a.Stdout, "%s stays as it was; keep it as a backup, nothing writes to it once the config names the database.\n", src.Path())
	return nil
}

// openBoltToMigrate opens the config's bbolt store read-write, which
// also holds it against serve and every other command for the copy. A
// missing file is an error here, not a new empty store to move.
func (a *App) openBoltToMigrate(cfg *configs.Config) (*store.DB, error) {
	path := filepath.Join(cfg.DataDir, "rugwatch.db")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no store at %s to migrate (data_dir of %s)", path, cfg.Path)
	}
	db, err := store.Open(path, store.Options{})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%s is in use: stop `rugwatch serve` (and any proxy) first, so that pending alerts and the event chain's head do not move during the copy", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	return db, nil
}

// dsnRef is --to as given: a reference or a URL, checked for its form,
// resolved only for the open.
type dsnRef struct {
	secret configs.Secret
	// reference says the value is one ${env:…} or ${file:…} and
	// nothing else, which the config can name as it is.
	reference bool
	// literalPassword says a URL written out carries a password.
	literalPassword bool
	// safe is a literal URL without a password, which the config may
	// carry as it is.
	safe string
}

// dsnReference checks --to as the config checks store:, so what migrate
// accepts the config takes too.
func dsnReference(to string) (dsnRef, error) {
	const want = "--to takes a postgres:// URL, or ${env:NAME} or ${file:PATH} holding one"
	if p, ok := strings.CutPrefix(to, "${file:"); ok && strings.HasSuffix(p, "}") && !filepath.IsAbs(strings.TrimSuffix(p, "}")) {
		// Relative to where migrate runs; the config resolves its own
		// relative to the config's directory, so the line it is told to
		// add names the file whole.
		if abs, err := filepath.Abs(strings.TrimSuffix(p, "}")); err == nil {
			to = "${file:" + abs + "}"
		}
	}
	s, err := configs.NewSecret(to)
	if err != nil {
		return dsnRef{}, usagef("%s: %v", want, err)
	}
	if strings.HasPrefix(to, "${") {
		// Printed back as the config line only when it is one reference
		// and nothing else: literal text around it may be a password.
		whole := strings.HasSuffix(to, "}") && strings.Count(to, "${") == 1 && strings.Count(to, "}") == 1
		return dsnRef{secret: s, reference: whole}, nil
	}
	if !strings.HasPrefix(to, "postgres://") && !strings.HasPrefix(to, "postgresql://") {
		return dsnRef{}, usagef("%s", want)
	}
	u, err := url.Parse(to)
	if err != nil {
		// url's message quotes the URL, password and all.
		return dsnRef{}, usagef("%s: the URL does not parse", want)
	}
	r := dsnRef{secret: s}
	_, r.literalPassword = u.User.Password()
	if u.Query().Has("password") {
		r.literalPassword = true
	}
	if !r.literalPassword {
		r.safe = to
	}
	return r, nil
}

// secretsFile is where configValue suggests a DSN with a password goes.
const secretsFile = "${file:/run/secrets/rugwatch_dsn}"

// configValue is what the config's store: should say: --to itself when
// the config may carry it, else a reference to a file for the URL.
func (r dsnRef) configValue() string {
	switch {
	case r.reference:
		return r.secret.Template()
	case r.safe != "":
		return r.safe
	default:
		return secretsFile
	}
}
