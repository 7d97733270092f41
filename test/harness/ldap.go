package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LDAP is a private OpenLDAP server (Debian's slapd, which `make tools`
// installs) on a loopback port, with one database whose suffix is BaseDN
// and an organisational unit for users. Its files, its log included, live
// in the directory it was started with.
type LDAP struct {
	// URL is ldap://127.0.0.1:PORT.
	URL string
	// BaseDN is the database's suffix; users are under UsersDN.
	BaseDN, UsersDN string
	// AdminDN and AdminPassword are the database's root identity.
	AdminDN, AdminPassword string

	dir  string
	proc *Process
}

// slapdBinary is where Debian's slapd package puts the server.
const slapdBinary = "/usr/sbin/slapd"

// StartLDAP starts slapd on a free loopback port with its config, database
// and log under dir.
func StartLDAP(ctx context.Context, dir string) (*LDAP, error) {
	if _, err := os.Stat(slapdBinary); err != nil {
		return nil, fmt.Errorf("slapd is not installed (%v): run 'make tools', which installs slapd and ldap-utils with apt-get", err)
	}
	if _, err := exec.LookPath("ldapadd"); err != nil {
		return nil, fmt.Errorf("ldapadd is not installed (%v): run 'make tools', which installs slapd and ldap-utils with apt-get", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	l := &LDAP{
		URL: "ldap://" + hostPort(port), BaseDN: "dc=veil,dc=test", UsersDN: "ou=users,dc=veil,dc=test",
		AdminDN: "cn=admin,dc=veil,dc=test", AdminPassword: "admin-" + strconv.FormatInt(time.Now().UnixNano(), 36), dir: dir,
	}
	// A minimal slapd.conf: the schemas inetOrgPerson needs, one mdb
	// database, the root identity (its password in the clear: a test
	// server on loopback), everything else denied to anonymous users but
	// binding.
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile %s
argsfile %s
modulepath /usr/lib/ldap
moduleload back_mdb
access to attrs=userPassword by anonymous auth by * none
access to * by users read by anonymous auth
database mdb
maxsize 67108864
suffix %q
rootdn %q
rootpw %s
directory %s
`, filepath.Join(dir, "slapd.pid"), filepath.Join(dir, "slapd.args"), l.BaseDN, l.AdminDN, l.AdminPassword, filepath.Join(dir, "data"))
	confFile := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	// -d keeps slapd in the foreground, where the harness can stop it;
	// level 0 logs no operations.
	l.proc, err = startProcess("slapd", dir, slapdBinary, []string{"-d", "0", "-h", l.URL, "-f", confFile}, nil)
	if err != nil {
		return nil, err
	}
	if err := l.proc.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", hostPort(port))
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		l.Stop()
		return nil, err
	}
	if err := l.add(ctx, fmt.Sprintf(`dn: %s
objectClass: dcObject
objectClass: organization
dc: veil
o: Veil tests

dn: %s
objectClass: organizationalUnit
ou: users
`, l.BaseDN, l.UsersDN)); err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

// AddUser adds uid=name under UsersDN with a password.
func (l *LDAP) AddUser(ctx context.Context, name, password string) error {
	return l.add(ctx, fmt.Sprintf(`dn: uid=%s,%s
objectClass: inetOrgPerson
uid: %s
cn: %s
sn: %s
userPassword: %s
`, name, l.UsersDN, name, name, name, password))
}

// add runs ldapadd as the root identity with entries on its stdin; the
// root password is in a private file of dir, never on a command line.
func (l *LDAP) add(ctx context.Context, ldif string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pwFile := filepath.Join(l.dir, "admin.pw")
	if err := os.WriteFile(pwFile, []byte(l.AdminPassword), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "ldapadd", "-x", "-H", l.URL, "-D", l.AdminDN, "-y", pwFile)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ldapadd: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// Stop stops slapd.
func (l *LDAP) Stop() {
	if l != nil && l.proc != nil {
		l.proc.Stop()
	}
}
