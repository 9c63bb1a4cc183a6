# Does not parse: a template import must fail and leave the active version alone.
resource "terraform_data" "home" {
  input = "unterminated
}
