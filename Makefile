# make install: the programs, the OCF agents and the handler where
# Pacemaker finds them, the systemd unit, the man page and the shell
# completions (written by ticketctl from its command table). PREFIX and
# DESTDIR as usual.
PREFIX ?= /usr/local
OCFDIR ?= /usr/lib/ocf/resource.d/geobooth
UNITDIR ?= /etc/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions

.PHONY: all install test deb

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

all:
	go build -ldflags "-X github.com/geobooth/geobooth/kit/buildinfo.Version=$(VERSION)" -o bin/ ./cmd/...

test:
	go test ./...

# make deb: dist/geobooth_VERSION_ARCH.deb, reproducible (packaging/deb/build).
deb:
	packaging/deb/build dist

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(OCFDIR) $(DESTDIR)$(PREFIX)/share/geobooth/handlers $(DESTDIR)$(UNITDIR) $(DESTDIR)/etc/geobooth
	install -m 0755 bin/geoboothd bin/ticketctl $(DESTDIR)$(PREFIX)/bin/
	install -m 0755 pacemaker/agents/geobooth pacemaker/agents/ticket-guard pacemaker/agents/volume $(DESTDIR)$(OCFDIR)/
	install -m 0755 pacemaker/handlers/service-runnable $(DESTDIR)$(PREFIX)/share/geobooth/handlers/
	sed 's|/usr/local/bin|$(PREFIX)/bin|g' examples/systemd/geoboothd@.service > $(DESTDIR)$(UNITDIR)/geoboothd@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/geoboothd@.service
	install -d $(DESTDIR)$(SYSUSERSDIR)
	install -m 0644 examples/systemd/geobooth.conf $(DESTDIR)$(SYSUSERSDIR)/geobooth.conf
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	install -d $(DESTDIR)$(MANDIR)/man8
	bin/ticketctl man > $(DESTDIR)$(MANDIR)/man1/ticketctl.1
	bin/geoboothd -man > $(DESTDIR)$(MANDIR)/man8/geoboothd.8
	bin/ticketctl completion bash > $(DESTDIR)$(BASHCOMPDIR)/ticketctl
	bin/ticketctl completion fish > $(DESTDIR)$(FISHCOMPDIR)/ticketctl.fish
	bin/ticketctl completion zsh > $(DESTDIR)$(ZSHCOMPDIR)/_ticketctl
	chmod 0644 $(DESTDIR)$(MANDIR)/man1/ticketctl.1 $(DESTDIR)$(MANDIR)/man8/geoboothd.8 $(DESTDIR)$(BASHCOMPDIR)/ticketctl $(DESTDIR)$(FISHCOMPDIR)/ticketctl.fish $(DESTDIR)$(ZSHCOMPDIR)/_ticketctl
