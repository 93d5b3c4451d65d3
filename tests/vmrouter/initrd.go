package vmrouter

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// buildInitrd writes the guest's initramfs (an uncompressed newc cpio,
// made by busybox's cpio): busybox, the kernel's modules, init.sh as /init
// and the modules' load order.
func buildInitrd(dir string, k *Kernel) (string, error) {
	root := filepath.Join(dir, "initrd")
	for _, d := range []string{"bin", "lib/modules", "proc", "sys", "dev", "host"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return "", err
	}
	if err := copyFile(busybox, filepath.Join(root, "bin", "busybox"), 0o755); err != nil {
		return "", err
	}
	var names []string
	for _, m := range k.Modules {
		if err := copyFile(m, filepath.Join(root, "lib", "modules", filepath.Base(m)), 0o644); err != nil {
			return "", err
		}
		names = append(names, strings.TrimSuffix(filepath.Base(m), ".ko"))
	}
	if err := os.WriteFile(filepath.Join(root, "modules"), []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "init"), initScript, 0o755); err != nil {
		return "", err
	}
	var list strings.Builder
	if err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(root, p); rel != "." {
			list.WriteString(rel + "\n")
		}
		return nil
	}); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "initrd.cpio")
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd := exec.Command(busybox, "cpio", "-o", "-H", "newc")
	var msg strings.Builder
	cmd.Dir, cmd.Stdin, cmd.Stdout, cmd.Stderr = root, strings.NewReader(list.String()), f, &msg
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("busybox cpio: %w: %s", err, msg.String())
	}
	return out, os.RemoveAll(root)
}

func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}
