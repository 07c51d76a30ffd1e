package compose

// CheckIdentity reads and parses the age identity file as a load that
// needs it would, without decrypting anything: the preflight of
// `lockstep validate`, agent start-up and reload, so a missing or
// unprotected identity file is found before the first encrypted release.
func CheckIdentity(file string) error {
	if file == "" {
		return nil
	}
	k := newKeyring(SecretOptions{IdentityFile: file})
	return k.identities("[secrets].age_identity")
}
