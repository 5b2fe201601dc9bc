package config

import (
	"reflect"
	"strconv"

	"github.com/chainguard-dev/image-request-bridge/connectors"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

// SourceConfig is one registered source and its configuration section.
type SourceConfig struct {
	Connector source.Connector
	Section   source.Section
}

// Name is the source's name, its top-level key.
func (s SourceConfig) Name() string { return s.Connector.Name() }

// Enabled reports whether the section enables the source.
func (s SourceConfig) Enabled() bool { return s.Section.Settings().Enabled }

// Sources returns every registered source with its section (a zero,
// defaulted section when the file has none), in registry order.
func (c *Config) Sources() []SourceConfig { return c.sources }

// EnabledSources returns the sources whose section enables them, in
// registry order.
func (c *Config) EnabledSources() []SourceConfig {
	var out []SourceConfig
	for _, s := range c.sources {
		if s.Enabled() {
			out = append(out, s)
		}
	}
	return out
}

// Section returns the section of the source named name, or nil when no
// registered source has that name. Its concrete type is the connector's
// (e.g. *servicenow.Config).
func (c *Config) Section(name string) source.Section {
	for _, s := range c.sources {
		if s.Name() == name {
			return s.Section
		}
	}
	return nil
}

// Connectors returns the registered connectors the configuration was read
// with, in order.
func (c *Config) Connectors() []source.Connector {
	out := make([]source.Connector, len(c.sources))
	for i, s := range c.sources {
		out[i] = s.Connector
	}
	return out
}

// newSources returns a fresh section for each connector.
func newSources(conns []source.Connector) []SourceConfig {
	out := make([]SourceConfig, len(conns))
	for i, k := range conns {
		out[i] = SourceConfig{Connector: k, Section: k.NewSection()}
	}
	return out
}

// WithSources returns an empty configuration for conns (default: the
// registry), to be filled in by hand and checked with ApplyDefaults and
// Validate. Load and Parse use the registry.
func WithSources(conns ...source.Connector) *Config {
	if len(conns) == 0 {
		conns = connectors.Sources
	}
	return &Config{sources: newSources(conns)}
}

// fileType is the type of the whole file as the decoder sees it: Config's
// own keys, with each source's section inserted after chainguard, so that
// `validate` shows the sections where an operator writes them.
func fileType(sources []SourceConfig) reflect.Type {
	ct := reflect.TypeOf(Config{})
	var fields []reflect.StructField
	for i := 0; i < ct.NumField(); i++ {
		f := ct.Field(i)
		if !f.IsExported() {
			continue
		}
		fields = append(fields, reflect.StructField{Name: f.Name, Type: f.Type, Tag: f.Tag})
		if f.Name == "Chainguard" {
			for j, s := range sources {
				fields = append(fields, reflect.StructField{
					Name: "Source" + strconv.Itoa(j),
					Type: reflect.TypeOf(s.Section).Elem(),
					Tag:  reflect.StructTag(`yaml:"` + s.Name() + `"`),
				})
			}
		}
	}
	return reflect.StructOf(fields)
}

// toFile copies c and sections into a value of fileType.
func (c *Config) toFile(sections []source.Section) reflect.Value {
	v := reflect.New(fileType(c.sources)).Elem()
	cv := reflect.ValueOf(c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if src := cv.FieldByName(f.Name); src.IsValid() {
			v.Field(i).Set(src)
		}
	}
	for j, s := range sections {
		v.FieldByName("Source" + strconv.Itoa(j)).Set(reflect.ValueOf(s).Elem())
	}
	return v
}

// fromFileValue copies a decoded value of fileType into c and its sections.
func (c *Config) fromFileValue(v reflect.Value) {
	cv := reflect.ValueOf(c).Elem()
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Name
		if dst := cv.FieldByName(name); dst.IsValid() {
			dst.Set(v.Field(i))
		}
	}
	for j, s := range c.sources {
		reflect.ValueOf(s.Section).Elem().Set(v.FieldByName("Source" + strconv.Itoa(j)))
	}
}

// copySection returns a shallow copy of s's section.
func copySection(s SourceConfig) source.Section {
	cp := s.Connector.NewSection()
	reflect.ValueOf(cp).Elem().Set(reflect.ValueOf(s.Section).Elem())
	return cp
}
