package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hookrelay/hookrelay/transforms"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Errors collects "file:line: message" problems; its Error is all of them,
// one a line.
type Errors struct{ list []string }

// Empty reports whether there is no problem.
func (e *Errors) Empty() bool { return len(e.list) == 0 }

func (e *Errors) Error() string { return strings.Join(e.list, "\n") }

// Problems returns every problem, one "file:line: message" each.
func (e *Errors) Problems() []string { return e.list }

// Add adds a problem at path of doc's file, with its line.
func (e *Errors) Add(doc *Doc, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if doc == nil || doc.file == "" {
		e.list = append(e.list, msg)
		return
	}
	e.list = append(e.list, fmt.Sprintf("%s:%d: %s", filepath.ToSlash(doc.file), doc.line(path), msg))
}

// AddDecode adds each problem of a decode error, under prefix.
func (e *Errors) AddDecode(doc *Doc, prefix string, err error) {
	if err == nil {
		return
	}
	for _, fe := range flattenDecode(err) {
		var f *FieldError
		if errors.As(fe, &f) {
			p := joinPrefix(prefix, f.Path)
			e.Add(doc, p, "%s: %s", p, f.Msg)
			continue
		}
		e.Add(doc, prefix, "%s: %v", prefix, fe)
	}
}

// AddField adds err, a problem of the block at path. Errors that name a
// field inside the block (decode, verifier and mapping errors) get its line.
func (e *Errors) AddField(doc *Doc, path string, err error) {
	for _, fe := range flattenDecode(err) {
		p, msg := path, fe.Error()
		var f *FieldError
		var ce *verifiers.ConfigError
		var te *transforms.FieldError
		switch {
		case errors.As(fe, &f):
			p, msg = joinPrefix(path, f.Path), f.Msg
		case errors.As(fe, &ce):
			p, msg = joinPrefix(path, ce.Field), ce.Msg
		case errors.As(fe, &te):
			p, msg = joinPrefix(path, te.Field), te.Err.Error()
		}
		e.Add(doc, p, "%s: %s", p, msg)
	}
}

// Merge adds the problems of err, a load error.
func (e *Errors) Merge(err error) {
	var l *Errors
	if errors.As(err, &l) {
		e.list = append(e.list, l.list...)
		return
	}
	e.list = append(e.list, err.Error())
}

func joinPrefix(prefix, p string) string {
	switch {
	case prefix == "":
		return p
	case p == "":
		return prefix
	case strings.HasPrefix(p, "["):
		return prefix + p
	}
	return prefix + "." + p
}

// AddPlain adds msg as it is: a problem of no one line (a file that does not
// parse, a name two files share).
func (e *Errors) AddPlain(msg string) { e.list = append(e.list, msg) }
