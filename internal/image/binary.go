package image

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// MainPackage is the package the image's binary is built from.
const MainPackage = "github.com/sluice-dev/sluice/cmd/sluice"

// elfMachines are the ELF machines of the architectures images are built for.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

// CheckBinary reports whether bin would run as the entrypoint of an image
// for platform, on an empty base: a 64-bit ELF executable for the
// platform's machine, statically linked (no interpreter, no shared
// libraries), and a Go binary of mainPackage built for that OS and
// architecture with cgo off. It reads the file only, so it checks binaries
// for architectures this machine cannot run.
func CheckBinary(bin []byte, platform v1.Platform, mainPackage string) error {
	want, ok := elfMachines[platform.Architecture]
	if !ok {
		return fmt.Errorf("binary for %s: unsupported architecture %q (supported: amd64, arm64)", platform.String(), platform.Architecture)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("binary for %s: not an ELF file: %w", platform.String(), err)
	}
	defer f.Close()
	if f.Machine != want || f.Class != elf.ELFCLASS64 {
		return fmt.Errorf("binary for %s: ELF machine %s (%s), want %s", platform.String(), f.Machine, f.Class, want)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("binary for %s: ELF type %s is not an executable", platform.String(), f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("binary for %s: dynamically linked (has a program interpreter); build with CGO_ENABLED=0", platform.String())
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return fmt.Errorf("binary for %s: needs shared libraries %v; build with CGO_ENABLED=0", platform.String(), libs)
	}
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("binary for %s: no Go build info: %w", platform.String(), err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	checks := []struct{ key, want string }{
		{"GOOS", platform.OS},
		{"GOARCH", platform.Architecture},
		{"CGO_ENABLED", "0"},
	}
	for _, c := range checks {
		if got := settings[c.key]; got != c.want {
			return fmt.Errorf("binary for %s: built with %s=%q, want %q", platform.String(), c.key, got, c.want)
		}
	}
	if info.Path != mainPackage {
		return fmt.Errorf("binary for %s: built from %s, want %s", platform.String(), info.Path, mainPackage)
	}
	return nil
}
